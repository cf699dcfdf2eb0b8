"""Worker rows, written in batches so that no welcome and no close waits for Postgres.

A storm of thousands of workers reconnecting at once used to cost one
`INSERT` per welcome and one `UPDATE` per close, each on the shared pool,
each before the worker got its job. Now a welcome only queues its row and a
close only marks it; one task writes what is queued every `FLUSH_SECONDS`:
new rows in one `INSERT … SELECT FROM unnest`, closes in one `UPDATE … FROM
unnest`. The times written are those of the welcome and the close, not of
the write.

While Postgres is away the queue waits, up to `max_unwritten_worker_rows`; a
welcome beyond that is refused (1011, as when Postgres was down before), so
memory stays bounded and no row is dropped.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

from shared.backoff import Backoff
from shared.db import POOL
from shared.errors import DatabaseUnavailable, count, down_as
from shared.protocol import Welcome
from worker_server.store import close_rows_left_open

log = logging.getLogger(__name__)
_database = down_as(DatabaseUnavailable)
# Long enough to gather a burst of welcomes into one write, short next to a
# worker's session; the dashboard's counts lag by at most this much.
FLUSH_SECONDS = 0.05

NEW_IDS = "SELECT nextval(pg_get_serial_sequence('worker', 'id')) FROM generate_series(1, $1)"

# Idempotent: a write cut off by a cancel may have landed before it was tried
# again with the same ids (taken from the sequence once per row).
INSERT_ROWS = """
INSERT INTO worker (id, ip, remote_ip, address, hardware, hardware_id, caption,
    server_instance, connected_at, last_seen_at, disconnected_at, close_code)
SELECT id, ip, remote_ip, address, hardware, hardware_id, caption, $9,
    connected_at, coalesce(disconnected_at, connected_at), disconnected_at, close_code
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::timestamptz[], $10::timestamptz[], $11::int[])
    AS row(id, ip, remote_ip, address, hardware, hardware_id, caption, connected_at,
        disconnected_at, close_code)
ON CONFLICT (id) DO UPDATE SET disconnected_at = EXCLUDED.disconnected_at,
    last_seen_at = EXCLUDED.last_seen_at, close_code = EXCLUDED.close_code
WHERE worker.disconnected_at IS NULL
"""

CLOSE_ROWS = """
UPDATE worker SET disconnected_at = closed.at, last_seen_at = closed.at, close_code = closed.code
FROM unnest($1::bigint[], $2::timestamptz[], $3::int[]) AS closed(id, at, code)
WHERE worker.id = closed.id AND worker.disconnected_at IS NULL
"""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(eq=False, slots=True)
class WorkerRow:
    """One connection's row: its id once written, its close once it closed."""

    welcome: Welcome
    remote_ip: str
    connected_at: datetime.datetime = field(default_factory=_now)
    id: int | None = None
    closed_at: datetime.datetime | None = None
    close_code: int | None = None
    close_written: bool = False


class WorkerRows:
    """The rows of this process's connections, and the queue of what Postgres has yet to see."""

    def __init__(self, server_instance: str, max_pending: int) -> None:
        self.server_instance = server_instance
        self.max_pending = max_pending
        self.open: set[WorkerRow] = set()  # of connections still open; liveness touches them
        self._new: list[WorkerRow] = []
        self._closed: list[WorkerRow] = []
        self._queued = asyncio.Event()
        self._left_open_closed = False

    @property
    def pending(self) -> int:
        return len(self._new) + len(self._closed)

    def opened(self, welcome: Welcome, remote_ip: str) -> WorkerRow:
        """Queue the row of a welcomed connection; refused while too much waits already."""
        if self.pending >= self.max_pending:
            raise DatabaseUnavailable(f"{self.pending} worker rows wait for Postgres")
        row = WorkerRow(welcome, remote_ip)
        self.open.add(row)
        self._new.append(row)
        self._queued.set()
        return row

    def closed(self, row: WorkerRow, close_code: int | None) -> None:
        """Mark it closed; written with its row if that is not written yet."""
        self.open.discard(row)
        row.closed_at, row.close_code = _now(), close_code
        if row.id is not None:
            self._closed.append(row)
            self._queued.set()

    def open_ids(self) -> list[int]:
        return [row.id for row in self.open if row.id is not None]

    async def run(self, pool: asyncpg.Pool) -> None:
        """Close what a previous run left open, then write every batch; owned by the app.

        The left-open rows are closed first, so that no row of this run, written
        under the same instance name, is ever taken for one of them.
        """
        backoff = Backoff()
        while not self._left_open_closed:  # once per start, never on a restart of this task
            if not await self._attempt(lambda: self._close_left_open(pool)):
                await backoff.sleep()
        while True:
            await self._queued.wait()
            await asyncio.sleep(FLUSH_SECONDS)
            self._queued.clear()
            if not await self._attempt(lambda: self.flush(pool)):
                self._queued.set()
                await backoff.sleep()
            else:
                backoff.reset()

    async def flush(self, pool: asyncpg.Pool) -> None:
        """Write in the order things happened: the closes of rows already written, the
        new rows (closed with them if they closed), the closes that came meanwhile.
        What fails stays queued."""
        await self._write_closes(pool)
        new, self._new = self._new, []
        try:
            await self._insert(pool, new)
        except BaseException:
            self._new[:0] = new
            raise
        self._closed += [r for r in new if r.closed_at is not None and not r.close_written]
        await self._write_closes(pool)

    async def _write_closes(self, pool: asyncpg.Pool) -> None:
        closed, self._closed = self._closed, []
        try:
            await self._close(pool, closed)
        except BaseException:
            self._closed[:0] = closed
            raise

    async def _attempt(self, write: Callable[[], Awaitable[None]]) -> bool:
        try:
            await write()
        except DatabaseUnavailable as error:
            count(error)
            log.warning("worker_rows_write_failed", extra={"error": str(error)})
            return False
        return True

    async def _close_left_open(self, pool: asyncpg.Pool) -> None:
        closed = await close_rows_left_open(pool, self.server_instance)
        self._left_open_closed = True
        log.info("worker_rows_left_open_closed", extra={"count": closed})

    @_database
    async def _insert(self, pool: asyncpg.Pool, rows: list[WorkerRow]) -> None:
        waiting = [row for row in rows if row.id is None]
        if waiting:
            ids = await pool.fetch(NEW_IDS, len(waiting))
            for row, record in zip(waiting, ids, strict=True):
                row.id = record[0]
        if not rows:
            return
        # Closes taken now are written with the row; a later one, with the next closes.
        closes = [(row.closed_at, row.close_code) for row in rows]
        await pool.execute(
            INSERT_ROWS,
            [row.id for row in rows],
            [row.welcome.ip for row in rows],
            [row.remote_ip for row in rows],
            [row.welcome.address for row in rows],
            [row.welcome.hardware for row in rows],
            [row.welcome.hardware_id for row in rows],
            [row.welcome.caption for row in rows],
            [row.connected_at for row in rows],
            self.server_instance,
            [closed_at for closed_at, _ in closes],
            [code for _, code in closes],
        )
        for row, (closed_at, _) in zip(rows, closes, strict=True):
            row.close_written = closed_at is not None

    @_database
    async def _close(self, pool: asyncpg.Pool, rows: list[WorkerRow]) -> None:
        if not rows:
            return
        await pool.execute(
            CLOSE_ROWS,
            [row.id for row in rows],
            [row.closed_at for row in rows],
            [row.close_code for row in rows],
        )
        for row in rows:
            row.close_written = True


# A shutdown's closes get this long to be written; rows still open then are
# closed 1006 by this instance's next start.
SHUTDOWN_WRITE_SECONDS = 5.0


def written_at_shutdown(rows: WorkerRows) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context: once the app stops, one last write of what is queued."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        yield
        try:
            async with asyncio.timeout(SHUTDOWN_WRITE_SECONDS):
                await rows.flush(app[POOL])
        except Exception as error:  # the cleanup goes on: the next start closes them 1006
            log.warning(
                "worker_rows_lost_at_shutdown", extra={"count": rows.pending, "error": repr(error)}
            )

    return context
