"""Overload control: while the event loop lags, shares are shed with `overloaded`, candidates
are taken, and handshakes wait for a 503; once it catches up, all is served again.

The lag is real: a task in the servers' own loop blocks it for 60 ms at a time, as a
flood of work would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.support import clients
from tests.support.http import call
from tests.support.metrics import scrape
from tests.support.poll import until
from tests.support.stack import Stack, servers_with

BUDGET_MS = 20
SHED = ("wspool_shed_total", (("what", "share"),))

shedding = servers_with(worker={"shed_lag_ms": BUDGET_MS})


@contextlib.asynccontextmanager
async def lagging_loop() -> AsyncIterator[None]:
    """Block the running loop 60 ms in every 70 until the block ends."""

    async def hog() -> None:
        while True:
            time.sleep(0.06)  # noqa: ASYNC251 - blocking on purpose: this is the overload
            await asyncio.sleep(0.01)

    task = asyncio.create_task(hog())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def lag_ms(stack: Stack) -> float:
    _status, body = await call("GET", f"{stack.worker_http}/readyz")
    return body["event_loop_lag_ms"]


async def stored(db: asyncpg.Pool, task_id: str, target: int) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM solution WHERE task_id = $1 AND solution_target = $2",
        uuid.UUID(task_id),
        target,
    )


async def test_a_lagging_loop_sheds_shares_takes_candidates_and_recovers(
    shedding: Stack, db: asyncpg.Pool
) -> None:
    async with clients.on_a_new_job(shedding, proof_target=100) as (worker, node, task_id):
        shed_before = (await scrape(shedding.worker_http)).get(SHED, 0.0)
        async with lagging_loop():
            await until(lambda: lag_ms(shedding), lambda lag: lag > BUDGET_MS)
            await worker.send(clients.solution(task_id, target=50))  # a share
            frame = await worker.receive(timeout=10)
            assert (frame["type"], frame["code"]) == ("error", "overloaded")
            candidate = clients.solution_body()
            await worker.send(clients.solution(task_id, target=200, body=candidate))
            assert await node.receive(timeout=10) == candidate  # taken while shedding
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with clients.connect(shedding.worker_url):
                    pass
            assert refused.value.status == 503
        assert (await scrape(shedding.worker_http)).get(SHED, 0.0) - shed_before == 1
        assert await stored(db, task_id, 50) == 0, "a shed share is not published"
        # Caught up: the same share is taken (the control), and the worker was never closed.
        await until(lambda: lag_ms(shedding), lambda lag: lag < BUDGET_MS)
        await worker.send(clients.solution(task_id, target=50))
        await until(lambda: stored(db, task_id, 50), lambda count: count == 1)
        assert not worker.ws.closed
