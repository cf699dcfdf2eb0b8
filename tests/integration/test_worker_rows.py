"""Worker rows are written in batches, off the welcome's path, and never dropped."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.errors import DatabaseUnavailable
from shared.protocol import Welcome
from tests.support import clients
from tests.support.poll import until
from tests.support.stack import Stack
from worker_server.rows import WorkerRows

ROW = "SELECT * FROM worker WHERE hardware_id = $1"


def welcome(hardware_id: str) -> Welcome:
    return Welcome.model_validate(clients.welcome(hardware_id))


async def test_rows_and_closes_are_written_with_the_times_they_happened(
    db: asyncpg.Pool,
) -> None:
    rows = WorkerRows(f"rows-{uuid.uuid4().hex[:8]}", max_pending=100)
    kept, brief = f"kept-{uuid.uuid4().hex[:8]}", f"brief-{uuid.uuid4().hex[:8]}"
    kept_row = rows.opened(welcome(kept), "192.0.2.1")
    brief_row = rows.opened(welcome(brief), "192.0.2.2")
    rows.closed(brief_row, 1000)  # closed before its row was ever written
    await rows.flush(db)
    stored = await db.fetchrow(ROW, kept)
    assert stored["id"] == kept_row.id and stored["disconnected_at"] is None
    assert stored["connected_at"] == kept_row.connected_at
    assert (stored["remote_ip"], stored["server_instance"]) == ("192.0.2.1", rows.server_instance)
    gone = await db.fetchrow(ROW, brief)
    assert (gone["disconnected_at"], gone["close_code"]) == (brief_row.closed_at, 1000)
    rows.closed(kept_row, 1001)
    await rows.flush(db)
    stored = await db.fetchrow(ROW, kept)
    assert (stored["disconnected_at"], stored["close_code"]) == (kept_row.closed_at, 1001)
    assert rows.pending == 0 and not rows.open


async def test_rows_wait_while_postgres_is_away_and_are_written_once_it_is_back(
    db: asyncpg.Pool,
) -> None:
    rows = WorkerRows(f"rows-{uuid.uuid4().hex[:8]}", max_pending=2)
    first, second = f"wait-{uuid.uuid4().hex[:8]}", f"wait-{uuid.uuid4().hex[:8]}"
    rows.opened(welcome(first), "192.0.2.3")
    rows.opened(welcome(second), "192.0.2.4")
    with pytest.raises(DatabaseUnavailable):  # bounded: the third waits for nothing
        rows.opened(welcome("one-too-many"), "192.0.2.5")
    async with _unreachable_pool() as away:
        with pytest.raises(DatabaseUnavailable):
            await rows.flush(away)
    assert rows.pending == 2  # nothing dropped
    await rows.flush(db)
    assert rows.pending == 0
    assert [
        await db.fetchval("SELECT count(*) FROM worker WHERE hardware_id = $1", h)
        for h in (first, second)
    ] == [1, 1]


async def test_a_welcome_gets_its_job_while_the_worker_table_is_locked(
    stack: Stack, db: asyncpg.Pool
) -> None:
    """The welcome used to wait for its row's INSERT: a busy or locked table held the job."""
    hello = clients.welcome()
    async with clients.worker_and_node(stack) as (first, node):
        await clients.job_sent(node, first, clients.next_height())
        async with db.acquire() as locker, locker.transaction():
            await locker.execute("LOCK TABLE worker IN ACCESS EXCLUSIVE MODE")
            async with clients.worker_client(stack.worker_url, hello) as worker:
                job = await asyncio.wait_for(worker.receive(), timeout=10)
                assert "task_id" in job
        # The row waited for the lock, queued, and is written once it is gone.
        row = await until(lambda: db.fetchrow(ROW, hello["hardware_id"]))
        assert row["remote_ip"] == "127.0.0.1"


@contextlib.asynccontextmanager
async def _unreachable_pool() -> AsyncIterator[asyncpg.Pool]:
    """A pool whose every query fails to connect, as while Postgres restarts."""
    pool = asyncpg.create_pool("postgresql://postgres@127.0.0.1:1/none", min_size=0)
    await pool
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_write_tried_again_after_it_landed_changes_nothing_but_the_close(
    db: asyncpg.Pool,
) -> None:
    """A flush cut off by a cancel may have landed; the next one sends the same ids again."""
    rows = WorkerRows(f"rows-{uuid.uuid4().hex[:8]}", max_pending=10)
    hardware_id = f"again-{uuid.uuid4().hex[:8]}"
    row = rows.opened(welcome(hardware_id), "192.0.2.9")
    await rows.flush(db)
    rows.closed(row, 1001)
    row.close_written = False
    await rows._insert(db, [row])  # the same id again, now with its close
    stored = await db.fetch(ROW, hardware_id)
    assert [(r["id"], r["close_code"]) for r in stored] == [(row.id, 1001)]
