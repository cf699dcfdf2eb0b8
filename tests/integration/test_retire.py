"""One job must not stall every worker: implausible heights refused, bad jobs retired.

Real sockets, RabbitMQ, Postgres and Tansu, in both fan-out modes.
"""

from __future__ import annotations

import aiohttp
import asyncpg

from tests.support import clients
from tests.support.http import ADMIN_REQUEST
from tests.support.stack import Stack

NEWEST = "SELECT max(block_height) FROM job WHERE retired_at IS NULL"
MAX_HEIGHT_JUMP = 100_000  # node_server's default


async def test_a_job_far_above_the_newest_is_refused_and_never_published(
    stack: Stack, db: asyncpg.Pool
) -> None:
    async with clients.worker_and_node(stack) as (worker, node):
        await clients.job_sent(node, worker, clients.next_height())
        newest = await db.fetchval(NEWEST)
        poison = newest + MAX_HEIGHT_JUMP + 1
        await node.send(clients.job(poison))
        assert await node.receive() == {
            "type": "error",
            "code": "implausible_height",
            "detail": f"block height {poison} is more than {MAX_HEIGHT_JUMP} above the "
            f"newest job's {newest}",
        }
        assert await worker.nothing_within(0.5)
        assert await db.fetchval("SELECT count(*) FROM job WHERE block_height = $1", poison) == 0
        await clients.job_sent(
            node, worker, clients.next_height()
        )  # the control: the next height flows

        poison = await db.fetchval(NEWEST) + MAX_HEIGHT_JUMP + 1
        async with aiohttp.ClientSession() as session:
            url = f"{stack.node_http}/api/jobs"
            async with session.post(url, json=clients.job(poison)) as reply:
                assert reply.status == 422
                assert (await reply.json())["error"] == "implausible_height"


async def test_a_retired_job_stops_being_current_for_every_worker(
    stack: Stack, db: asyncpg.Pool
) -> None:
    async with clients.worker_and_node(stack) as (worker, node):
        real = clients.next_height()
        await clients.job_sent(node, worker, real)
        poison = real + MAX_HEIGHT_JUMP // 2  # plausible enough to pass, wrong all the same
        poison_task = await clients.job_sent(node, worker, poison)
        stalled = clients.next_height()
        await node.send(clients.job(stalled))
        assert await worker.nothing_within(0.5), "below the poison: the worker refuses it"

        async with aiohttp.ClientSession(headers=ADMIN_REQUEST) as session:
            url = f"{stack.node_http}/api/jobs/{poison_task}/retire"
            async with session.post(url) as reply:
                assert reply.status == 200
                retired = await reply.json()
        assert retired["retired"] == poison_task and retired["block_height"] == poison
        assert retired["current"]["block_height"] == stalled

        # Every connected worker is reset to the newest job not retired and sent it ...
        frame = await worker.receive()
        assert frame["epoch_challenge"] == clients.challenge(stalled)
        # ... a worker joining now gets it as its first job ...
        async with clients.worker_client(stack.worker_url) as late:
            assert (await late.receive())["epoch_challenge"] == clients.challenge(stalled)
        # ... and the next job reaches them again.
        await clients.job_sent(node, worker, clients.next_height())
    row = await db.fetchrow("SELECT retired_at FROM job WHERE block_height = $1", poison)
    assert row["retired_at"] is not None, "a retired job stays in the table, marked"


async def test_a_retired_height_can_be_taken_by_a_new_job(stack: Stack, db: asyncpg.Pool) -> None:
    async with clients.worker_and_node(stack) as (worker, node):
        height = clients.next_height()
        task = await clients.job_sent(node, worker, height)
        async with aiohttp.ClientSession(headers=ADMIN_REQUEST) as session:
            async with session.post(f"{stack.node_http}/api/jobs/{task}/retire") as reply:
                assert reply.status == 200
        other = {**clients.challenge(height), "epoch_block_hash": f"again-{height}"}
        await node.send(clients.job(height, epoch_challenge=other))
        frame = await worker.job_for(height)
        assert frame["epoch_challenge"] == other and frame["task_id"] != task
    rows = await db.fetch("SELECT retired_at FROM job WHERE block_height = $1 ORDER BY id", height)
    assert [row["retired_at"] is None for row in rows] == [False, True]
