"""Every service samples its event loop's lag: a histogram, /readyz and the instance row."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from prometheus_client import REGISTRY

from tests.support.poll import until
from tests.support.stack import Processors

LAG_SLOW = "wspool_event_loop_lag_seconds_bucket"


def _samples_over(seconds: str) -> float:
    """Lag samples above `seconds` so far (the +Inf bucket less the one at `seconds`)."""
    total = REGISTRY.get_sample_value(LAG_SLOW, {"le": "+Inf"}) or 0.0
    below = REGISTRY.get_sample_value(LAG_SLOW, {"le": seconds}) or 0.0
    return total - below


async def _readyz(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return await response.json()


async def test_a_blocked_loop_is_seen_as_lag(processors: Processors) -> None:
    # The services run on this test's loop: sampling goes on while nothing blocks it...
    await asyncio.sleep(0.3)
    quiet = _samples_over("0.25")
    before = REGISTRY.get_sample_value(LAG_SLOW, {"le": "+Inf"}) or 0.0
    await asyncio.sleep(0.3)
    assert (REGISTRY.get_sample_value(LAG_SLOW, {"le": "+Inf"}) or 0.0) > before
    assert _samples_over("0.25") == quiet  # the control: no sample was late by 250 ms
    # ...and a callback that holds the loop for 400 ms makes one sample that late.
    time.sleep(0.4)  # noqa: ASYNC251 -- blocking the loop is the point
    await asyncio.sleep(0.25)
    assert _samples_over("0.25") >= quiet + 1


async def test_readyz_shows_the_latest_lag(processors: Processors) -> None:
    body = await _readyz(processors.job_http)
    assert isinstance(body["event_loop_lag_ms"], int | float)
    assert 0 <= body["event_loop_lag_ms"] < 1000


async def test_the_instance_row_carries_the_lag(processors: Processors, db) -> None:
    async def lags() -> list[float]:
        rows = await db.fetch(
            "SELECT (stats->>'event_loop_lag_seconds')::float AS lag FROM instance "
            "WHERE role = 'process_job_worker' AND heartbeat_at > now() - interval '5 s'"
        )
        return [row["lag"] for row in rows if row["lag"] is not None]

    assert all(lag >= 0 for lag in await until(lags, timeout=10))
