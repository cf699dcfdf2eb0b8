"""The height guard fails closed: a job it cannot check is refused, and the process
worker checks the jump again where the job is stored.

Real sockets, RabbitMQ, Postgres and Tansu; the database is made unable to
answer by a real lock on the job table, held in a transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aio_pika
import aiohttp
import asyncpg
import orjson
import pytest

from shared.rabbit import REASON_HEADER
from shared.routes import JOB, dead_letter_queue
from tests.support import clients
from tests.support.http import call
from tests.support.poll import broadcast_row, until
from tests.support.rabbit import publish
from tests.support.stack import Backends, Stack

NEWEST = "SELECT max(block_height) FROM job WHERE retired_at IS NULL"
MAX_HEIGHT_JUMP = 100_000  # the default of node_server and process_job_worker
POISON_JUMP = 105_000
JOB_DLQ = dead_letter_queue(JOB.queue)


@pytest.fixture(scope="module")
async def servers(start_servers) -> AsyncIterator[Stack]:
    async with start_servers() as stack:
        yield stack


@contextlib.asynccontextmanager
async def job_table_locked(dsn: str) -> AsyncIterator[None]:
    """The job table locked against every reader until the block ends."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def post_job(stack: Stack, height: int) -> tuple[int, dict, str | None]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{stack.node_http}/api/jobs", json=clients.job(height)) as reply:
            return reply.status, await reply.json(), reply.headers.get("Retry-After")


async def retire_above(stack: Stack, db: asyncpg.Pool, height: int) -> None:
    """Leave no implausible job current for the rest of the session (if one got through)."""
    rows = await db.fetch(
        "SELECT task_id FROM job WHERE block_height > $1 AND retired_at IS NULL", height
    )
    for row in rows:
        await call("POST", f"{stack.node_http}/api/jobs/{row['task_id']}/retire")


async def test_a_job_the_guard_cannot_check_is_refused_as_unavailable(
    servers: Stack, backends: Backends, db: asyncpg.Pool
) -> None:
    async with clients.worker_and_node(servers) as (worker, node):
        await clients.job_sent(node, worker, clients.next_height())
        newest = await db.fetchval(NEWEST)
        poison = newest + POISON_JUMP
        try:
            async with job_table_locked(backends.postgres_dsn):
                await node.send(clients.job(poison))
                refused = await node.receive(timeout=10)
                rest = await post_job(servers, poison)
            assert refused["type"] == "error" and refused["code"] == "unavailable", refused
            assert str(poison) in refused["detail"]
            status, body, retry_after = rest
            assert (status, body["error"]) == (503, "unavailable"), body
            assert str(poison) in body["detail"] and retry_after is not None
            assert int(retry_after) >= 1
            # The control: unlocked, the same job gets its usual answer, on both paths.
            await node.send(clients.job(poison))
            assert (await node.receive())["code"] == "implausible_height"
            status, body, _ = await post_job(servers, poison)
            assert (status, body["error"]) == (422, "implausible_height")
            count = "SELECT count(*) FROM job WHERE block_height = $1"
            assert await db.fetchval(count, poison) == 0
            await clients.job_sent(node, worker, clients.next_height())  # jobs flow on
        finally:
            await retire_above(servers, db, newest + MAX_HEIGHT_JUMP)


async def test_a_plausible_job_the_guard_cannot_check_is_refused_too(
    servers: Stack, backends: Backends, db: asyncpg.Pool
) -> None:
    height = clients.next_height()
    async with job_table_locked(backends.postgres_dsn):
        status, body, retry_after = await post_job(servers, height)
    assert (status, body["error"], retry_after is not None) == (503, "unavailable", True)
    assert await db.fetchval("SELECT count(*) FROM job WHERE block_height = $1", height) == 0
    status, _, _ = await post_job(servers, height)  # the control: once it can check, 202
    assert status == 202
    await broadcast_row(db, "SELECT * FROM job WHERE block_height = $1", height)


async def test_the_process_worker_dead_letters_a_job_far_above_the_newest(
    servers: Stack, backends: Backends, db: asyncpg.Pool
) -> None:
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await (await channel.get_queue(JOB_DLQ)).purge()
        newest = await db.fetchval(NEWEST)
        poison = newest + POISON_JUMP
        body = {"epoch_challenge": clients.challenge(poison), "proof_target": 1}
        try:
            # Straight to RabbitMQ, as a node_server that could not check would have.
            await publish(channel, JOB.exchange, orjson.dumps({**body, "block_height": poison}))
            dead = await until(lambda: _one_dead_letter(channel), timeout=20)
            assert orjson.loads(dead.body)["block_height"] == poison
            reason = dead.headers[REASON_HEADER]
            assert f"block height {poison} is more than {MAX_HEIGHT_JUMP} above" in reason
            assert (
                await db.fetchval("SELECT count(*) FROM job WHERE block_height = $1", poison) == 0
            )
            # The control: a plausible job published the same way is stored.
            height = clients.next_height()
            plausible = {"epoch_challenge": clients.challenge(height), "proof_target": 1}
            await publish(
                channel, JOB.exchange, orjson.dumps({**plausible, "block_height": height})
            )
            await broadcast_row(db, "SELECT * FROM job WHERE block_height = $1", height)
        finally:
            await retire_above(servers, db, newest + MAX_HEIGHT_JUMP)


async def _one_dead_letter(
    channel: aio_pika.abc.AbstractChannel,
) -> aio_pika.abc.AbstractIncomingMessage | None:
    return await (await channel.get_queue(JOB_DLQ)).get(fail=False, no_ack=True)
