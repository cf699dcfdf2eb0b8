"""Worker rows and task lookups in Postgres.

Each query raises `DatabaseUnavailable` when Postgres is down, so callers
hand it to the error catalogue instead of listing the driver's errors.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from aiohttp import web

from shared.errors import DatabaseUnavailable, down_as
from shared.fanout.stream import Fanout
from worker_server.jobs import JobUpdate

log = logging.getLogger(__name__)

_database = down_as(DatabaseUnavailable)

TOUCH_ROWS = "UPDATE worker SET last_seen_at = now() WHERE id = ANY($1::bigint[])"

# close_code 1006: the connection ended without a close we could record.
CLOSE_LEFT_OPEN = """
UPDATE worker SET disconnected_at = last_seen_at, close_code = 1006
WHERE server_instance = $1 AND disconnected_at IS NULL
"""

CLOSE_STALE = """
UPDATE worker SET disconnected_at = last_seen_at, close_code = 1006
WHERE disconnected_at IS NULL AND last_seen_at < now() - make_interval(secs => $1)
"""

STORE_BAN = """
INSERT INTO worker_ban (kind, key, scope, banned_until, reason, server_instance)
VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6)
ON CONFLICT (kind, key, scope) DO UPDATE SET banned_at = now(),
    banned_until = EXCLUDED.banned_until, reason = EXCLUDED.reason,
    server_instance = EXCLUDED.server_instance
"""

# Seconds left rather than the end time: instances' clocks need not agree.
ACTIVE_BANS = """
SELECT kind, key, scope, extract(epoch FROM banned_until - now())::float8 AS seconds_left,
    reason
FROM worker_ban WHERE banned_until > now()
"""


@_database
async def touch_worker_rows(pool: asyncpg.Pool, row_ids: list[int]) -> None:
    await pool.execute(TOUCH_ROWS, row_ids)


@_database
async def close_rows_left_open(pool: asyncpg.Pool, server_instance: str) -> int:
    status = await pool.execute(CLOSE_LEFT_OPEN, server_instance)
    return int(status.split()[-1])


@_database
async def close_stale_rows(pool: asyncpg.Pool, stale_after_seconds: float) -> int:
    status = await pool.execute(CLOSE_STALE, stale_after_seconds)
    return int(status.split()[-1])


@_database
async def store_ban(
    pool: asyncpg.Pool,
    kind: str,
    key: str,
    scope: str,
    seconds: float,
    reason: str,
    server_instance: str,
) -> None:
    await pool.execute(STORE_BAN, kind, key, scope, seconds, reason, server_instance)


@_database
async def active_bans(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(ACTIVE_BANS)


class KnownTasks:
    """Task ids that exist, with their proof target, and ids lately found missing: a
    bounded in-memory cache in front of the job table.

    A missing id is remembered for `missing_seconds` only, so a job stored
    meanwhile (another instance's fan-out ahead of ours) is found soon after;
    one that reaches this instance's fan-out is found at once. Both caches
    drop their oldest entry first, so made-up ids cost bounded memory, and the
    same made-up id sent again costs no query.
    The proof target is the lowest any node sent for the task's height (None:
    not known): a solution at or above it is a block candidate. It is also a
    subscriber of the job fan-out, so a job's target is known before its first
    solution arrives, and a lowered one replaces the cached one.
    """

    def __init__(
        self,
        capacity: int = 4096,
        missing_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.missing_seconds = missing_seconds
        self.clock = clock
        # Insertion order is recency: the oldest id is dropped first.
        self._ids: collections.OrderedDict[uuid.UUID, int | None] = collections.OrderedDict()
        self._missing: collections.OrderedDict[uuid.UUID, float] = collections.OrderedDict()

    def add(self, task_id: uuid.UUID, proof_target: int | None = None) -> None:
        self._missing.pop(task_id, None)
        known = self._ids.get(task_id)
        if known is not None and (proof_target is None or known < proof_target):
            proof_target = known  # targets only go down
        self._ids[task_id] = proof_target
        self._ids.move_to_end(task_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def proof_target(self, task_id: uuid.UUID) -> int | None:
        """The cached target of a task `exists` found (None: not known)."""
        return self._ids.get(task_id)

    @_database
    async def exists(self, pool: asyncpg.Pool, task_id: uuid.UUID) -> bool:
        if task_id in self._ids:
            return True
        if self._missing.get(task_id, -math.inf) > self.clock():
            return False
        row = await pool.fetchrow("SELECT proof_target FROM job WHERE task_id = $1", task_id)
        if row is None:
            self._remember_missing(task_id)
            return False
        self.add(task_id, row["proof_target"])
        return True

    def _remember_missing(self, task_id: uuid.UUID) -> None:
        self._missing[task_id] = self.clock() + self.missing_seconds
        self._missing.move_to_end(task_id)
        while len(self._missing) > self.capacity:
            self._missing.popitem(last=False)

    def offer(self, update: JobUpdate) -> None:
        """From the job fan-out: a job's task and target."""
        if update.task_id is not None:
            self.add(update.task_id, update.proof_target)

    def failed(self, error: Exception) -> None:
        log.error("known_tasks_offer_failed", extra={"error": repr(error)})


def keep_tasks_known(
    fanout: Fanout[JobUpdate], tasks: KnownTasks
) -> Callable[[web.Application], Coroutine[Any, Any, None]]:
    """Background task: `tasks` subscribed to the job fan-out while the app runs.

    In the background, so a per-connection fan-out that can't reach Kafka yet
    is retried without holding up the start.
    """

    async def run(_app: web.Application) -> None:
        await fanout.subscribe(tasks)
        try:
            await asyncio.Event().wait()
        finally:
            await fanout.unsubscribe(tasks)

    return run
