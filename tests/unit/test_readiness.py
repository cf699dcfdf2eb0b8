"""/readyz probes each dependency at most once a second, whatever the request rate."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from shared.health import CHECK_INTERVAL_SECONDS, add_check, add_health_routes, readyz


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
