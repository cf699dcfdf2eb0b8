"""Worker rows and task lookups in Postgres.

Each query raises `DatabaseUnavailable` when Postgres is down, so callers
hand it to the error catalogue instead of listing the driver's errors.
"""

from __future__ import annotations

import collections
import uuid

import asyncpg

from shared.errors import DatabaseUnavailable, down_as
from shared.protocol import Welcome

_database = down_as(DatabaseUnavailable)

OPEN_ROW = """
INSERT INTO worker (ip, remote_ip, address, hardware, hardware_id, caption, server_instance)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id
"""

CLOSE_ROW = """
UPDATE worker SET disconnected_at = now(), last_seen_at = now(), close_code = $2
WHERE id = $1 AND disconnected_at IS NULL
"""

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
INSERT INTO worker_ban (kind, key, banned_until, reason, server_instance)
VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
ON CONFLICT (kind, key) DO UPDATE SET banned_at = now(),
    banned_until = EXCLUDED.banned_until, reason = EXCLUDED.reason,
    server_instance = EXCLUDED.server_instance
"""

# Seconds left rather than the end time: instances' clocks need not agree.
ACTIVE_BANS = """
SELECT kind, key, extract(epoch FROM banned_until - now())::float8 AS seconds_left, reason
FROM worker_ban WHERE banned_until > now()
"""


@_database
async def open_worker_row(
    pool: asyncpg.Pool, welcome: Welcome, remote_ip: str, server_instance: str
) -> int:
    return await pool.fetchval(
        OPEN_ROW,
        welcome.ip,
        remote_ip,
        welcome.address,
        welcome.hardware,
        welcome.hardware_id,
        welcome.caption,
        server_instance,
    )


@_database
async def close_worker_row(pool: asyncpg.Pool, row_id: int, close_code: int | None) -> None:
    await pool.execute(CLOSE_ROW, row_id, close_code)


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
    pool: asyncpg.Pool, kind: str, key: str, seconds: float, reason: str, server_instance: str
) -> None:
    await pool.execute(STORE_BAN, kind, key, seconds, reason, server_instance)


@_database
async def find_ban(pool: asyncpg.Pool, kind: str, key: str) -> asyncpg.Record | None:
    return await pool.fetchrow(f"{ACTIVE_BANS} AND kind = $1 AND key = $2", kind, key)


@_database
async def address_bans(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(f"{ACTIVE_BANS} AND kind = 'ip'")


class KnownTasks:
    """Task ids that exist: a bounded in-memory cache in front of the job table.

    Only hits are cached, so a flood of made-up ids costs queries, not memory.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        # Insertion order is recency: the oldest id is dropped first.
        self._ids: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()

    def add(self, task_id: uuid.UUID) -> None:
        self._ids[task_id] = None
        self._ids.move_to_end(task_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    @_database
    async def exists(self, pool: asyncpg.Pool, task_id: uuid.UUID) -> bool:
        if task_id in self._ids:
            return True
        found = await pool.fetchval("SELECT true FROM job WHERE task_id = $1", task_id)
        if found is None:
            return False
        self.add(task_id)
        return True
