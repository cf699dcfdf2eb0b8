"""A database failover is an outage to wait out: nothing accepted is dead-lettered.

During a failover the database answers, but read-only (SQLSTATE 25006), as
`default_transaction_read_only` makes every new connection. What the process
workers could not store then must wait in RabbitMQ and be stored once the
database is writable again. Real Postgres, RabbitMQ and Tansu.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import orjson
import pytest

from shared.db import database_name, with_database
from shared.routes import JOB, SOLUTION, dead_letter_queue
from tests.support import clients
from tests.support.http import call
from tests.support.metrics import scrape
from tests.support.poll import broadcast_row, until
from tests.support.rabbit import publish, published_job
from tests.support.stack import Backends, Processors, Stack

POSTGRES_ERRORS = ("wspool_broker_errors_total", (("broker", "postgres"),))


@pytest.fixture(scope="module")
async def servers(start_servers) -> AsyncIterator[Stack]:
    async with start_servers() as stack:
        yield stack


@pytest.fixture
async def channel(backends: Backends) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        yield await connection.channel(publisher_confirms=True)


@contextlib.asynccontextmanager
async def read_only(dsn: str, db: asyncpg.Pool) -> AsyncIterator[None]:
    """The database read-only for every new connection, and the open ones ended, as a
    failover does; writable again when the block ends.

    The test's own pool `db` is told its connections are gone, so neither this
    test nor a later one meets a connection the server ended.
    """
    name = database_name(dsn)
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    quoted = '"' + name.replace('"', '""') + '"'
    try:
        await admin.execute(f"ALTER DATABASE {quoted} SET default_transaction_read_only = on")
        await _end_connections(admin, name)
        yield
    finally:
        await admin.execute(f"ALTER DATABASE {quoted} RESET default_transaction_read_only")
        await _end_connections(admin, name)
        await admin.close()
        await db.expire_connections()


async def _end_connections(admin: asyncpg.Connection, name: str) -> None:
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def postgres_errors(base: str) -> float:
    return (await scrape(base)).get(POSTGRES_ERRORS, 0)


async def tried(
    base: str, errors_before: float, channel: aio_pika.abc.AbstractChannel, dlq: str, dead: int
) -> None:
    """Until the process worker met the read-only database: it counted a Postgres
    error (waiting it out) or dead-lettered the message; only the first may happen."""

    async def outcome() -> tuple[float, int]:
        return await postgres_errors(base), await depth(channel, dlq)

    errors, dead_now = await until(
        outcome, lambda got: got[0] > errors_before or got[1] > dead, timeout=20
    )
    assert dead_now == dead, f"dead-lettered during the failover ({errors} errors counted)"


async def test_a_job_accepted_during_a_failover_is_stored_once_writable_not_dead_lettered(
    servers: Stack,
    backends: Backends,
    processors: Processors,
    db: asyncpg.Pool,
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    dlq = dead_letter_queue(JOB.queue)
    dead_before = await depth(channel, dlq)
    height = clients.next_height()
    async with read_only(backends.postgres_dsn, db):
        errors_before = await postgres_errors(processors.job_http)
        # A connection the failover ended may fail the height check first: the node is
        # told unavailable (503) and sends again, as a node does, until it is accepted.
        status, body = await until(
            lambda: call("POST", f"{servers.node_http}/api/jobs", clients.job(height)),
            lambda answer: answer[0] != 503,
        )
        assert status == 202, body
        # The worker tried and was refused by the read-only database ...
        await tried(processors.job_http, errors_before, channel, dlq, dead_before)
    # ... and stores the job once it is writable again.
    row = await broadcast_row(db, "SELECT * FROM job WHERE block_height = $1", height, timeout=30)
    assert orjson.loads(row["epoch_challenge"]) == clients.challenge(height)
    assert await depth(channel, dlq) == dead_before


async def test_a_solution_published_during_a_failover_is_stored_once_writable(
    backends: Backends,
    processors: Processors,
    db: asyncpg.Pool,
    channel: aio_pika.abc.AbstractChannel,
) -> None:
    dlq = dead_letter_queue(SOLUTION.queue)
    task_id = (await published_job(channel, db))["task_id"]
    dead_before = await depth(channel, dlq)
    body = {
        "task_id": str(task_id),
        "solution": clients.solution_body(),
        "solution_target": 5,
        "hardware_id": "gpu-failover",
        "caption": "c",
    }
    async with read_only(backends.postgres_dsn, db):
        errors_before = await postgres_errors(processors.solution_http)
        await publish(channel, SOLUTION.exchange, orjson.dumps(body))
        await tried(processors.solution_http, errors_before, channel, dlq, dead_before)
    query = "SELECT * FROM solution WHERE task_id = $1"
    row = await broadcast_row(db, query, uuid.UUID(str(task_id)), timeout=30)
    assert orjson.loads(row["solution"]) == body["solution"]
    assert await depth(channel, dlq) == dead_before
