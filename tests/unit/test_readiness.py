"""/readyz probes each dependency at most once a second, whatever the request rate."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from shared.runtime.health import (
    CHECK_INTERVAL_SECONDS,
    add_check,
    add_health_routes,
    metrics,
    readyz,
)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_burst_of_readiness_requests_probes_once() -> None:
    probes: list[int] = []
    clock = Clock()

    async def database() -> bool:
        probes.append(1)
        return True

    app = web.Application()
    add_health_routes(app, task_failure_limit=5)
    add_check(app, "postgres", database, clock)
    answers = await asyncio.gather(
        *(readyz(make_mocked_request("GET", "/readyz", app=app)) for _ in range(50))
    )
    assert {answer.status for answer in answers} == {200}
    assert len(probes) == 1
    clock.now += CHECK_INTERVAL_SECONDS - 0.001  # just short of the interval: still cached
    assert (await readyz(make_mocked_request("GET", "/readyz", app=app))).status == 200
    assert len(probes) == 1
    clock.now += 0.001  # the control: once the interval has passed it probes again
    assert (await readyz(make_mocked_request("GET", "/readyz", app=app))).status == 200
    assert len(probes) == 2


async def test_each_scrape_of_metrics_exports_every_checks_readiness() -> None:
    answers = {"postgres": True, "kafka-ready-test": False}
    clock = Clock()

    def check(name: str):
        async def probe() -> bool:
            return answers[name]

        return probe

    app = web.Application()
    add_health_routes(app, task_failure_limit=5)
    for name in answers:
        add_check(app, name, check(name), clock)
    text = (await metrics(make_mocked_request("GET", "/metrics", app=app))).text or ""
    assert 'wspool_ready{check="postgres"} 1.0' in text
    assert 'wspool_ready{check="kafka-ready-test"} 0.0' in text
    answers["kafka-ready-test"] = True  # the control: the gauge follows the next probe
    clock.now += CHECK_INTERVAL_SECONDS
    text = (await metrics(make_mocked_request("GET", "/metrics", app=app))).text or ""
    assert 'wspool_ready{check="kafka-ready-test"} 1.0' in text
