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


async def test_a_burst_of_readiness_requests_probes_once() -> None:
    probes: list[int] = []

    async def database() -> bool:
        probes.append(1)
        await asyncio.sleep(0.05)
        return True

    app = web.Application()
    add_health_routes(app, task_failure_limit=5)
    add_check(app, "postgres", database)
    answers = await asyncio.gather(
        *(readyz(make_mocked_request("GET", "/readyz", app=app)) for _ in range(50))
    )
    assert {answer.status for answer in answers} == {200}
    assert len(probes) == 1
    await asyncio.sleep(CHECK_INTERVAL_SECONDS)  # the control: a second later it probes again
    assert (await readyz(make_mocked_request("GET", "/readyz", app=app))).status == 200
    assert len(probes) == 2


async def test_each_scrape_of_metrics_exports_every_checks_readiness() -> None:
    answers = {"postgres": True, "kafka-ready-test": False}

    def check(name: str):
        async def probe() -> bool:
            return answers[name]

        return probe

    app = web.Application()
    add_health_routes(app, task_failure_limit=5)
    for name in answers:
        add_check(app, name, check(name))
    text = (await metrics(make_mocked_request("GET", "/metrics", app=app))).text or ""
    assert 'wspool_ready{check="postgres"} 1.0' in text
    assert 'wspool_ready{check="kafka-ready-test"} 0.0' in text
    answers["kafka-ready-test"] = True  # the control: the gauge follows the next probe
    await asyncio.sleep(CHECK_INTERVAL_SECONDS)
    text = (await metrics(make_mocked_request("GET", "/metrics", app=app))).text or ""
    assert 'wspool_ready{check="kafka-ready-test"} 1.0' in text
