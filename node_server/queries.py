"""The read API's SQL: every query the API and dashboard run, in one place (the
current job's is `shared.current_job`, which worker_server and retiring share).

Pages are keyset-paginated (`before` an id or height, newest first) so a page
costs the same however deep it is and rows arriving meanwhile don't shift it.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

# What a query runs on: the pool, or one connection of it (the dashboard's build).
Queryable = asyncpg.Pool | asyncpg.Connection

JOB_COLUMNS = "task_id, block_height, epoch_challenge, created_at, broadcast_at, retired_at"
SOLUTION_COLUMNS = (
    "id, task_id, nonce, hardware_id, caption, solution, solution_target, valid, checked, "
    "created_at, broadcast_at"
)
# Postgres text can't hold it, so no stored name has one (the protocol refuses it): a name
# asked for with one is unknown, not a query to send.
NUL = "\x00"
WORKER_COLUMNS = (
    "id, hardware_id, caption, address, hardware, ip, remote_ip, server_instance, "
    "connected_at, last_seen_at, disconnected_at, close_code"
)

STATS = """
SELECT
  (SELECT count(*) FROM worker WHERE disconnected_at IS NULL) AS connected_workers,
  (SELECT max(block_height) FROM job WHERE retired_at IS NULL) AS current_height,
  (SELECT count(*) FROM job WHERE created_at > now() - interval '1 minute') AS jobs_minute,
  (SELECT count(*) FROM job WHERE created_at > now() - interval '1 hour') AS jobs_hour,
  (SELECT count(*) FROM solution WHERE created_at > now() - interval '1 minute')
    AS solutions_minute,
  (SELECT count(*) FROM solution WHERE created_at > now() - interval '1 hour') AS solutions_hour
"""

PER_MINUTE = """
WITH minutes AS (
  SELECT generate_series(
    date_trunc('minute', now()) - make_interval(mins => $1 - 1),
    date_trunc('minute', now()),
    interval '1 minute'
  ) AS minute
)
SELECT m.minute,
  (SELECT count(*) FROM job j
     WHERE j.created_at >= m.minute AND j.created_at < m.minute + interval '1 minute') AS jobs,
  (SELECT count(*) FROM solution s
     WHERE s.created_at >= m.minute AND s.created_at < m.minute + interval '1 minute')
     AS solutions
FROM minutes m ORDER BY m.minute
"""

BUSIEST = """
SELECT hardware_id, count(*) AS solutions, max(created_at) AS last_solution_at
FROM solution WHERE created_at > now() - make_interval(secs => $1)
GROUP BY hardware_id ORDER BY solutions DESC, hardware_id LIMIT $2
"""

# Rows of instances that stopped cleanly, or were last heard of an hour ago, are history.
INSTANCES = """
SELECT role, name, version, started_at, heartbeat_at, ready, stats,
  heartbeat_at < now() - make_interval(secs => $1) AS stale
FROM instance
WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '1 hour'
ORDER BY role, name
"""

# Worker connections closed per minute, by close code (NULL: the row was swept).
CLOSES_PER_MINUTE = """
SELECT date_trunc('minute', disconnected_at) AS minute, close_code, count(*) AS closes
FROM worker WHERE disconnected_at > date_trunc('minute', now()) - make_interval(mins => $1 - 1)
GROUP BY 1, 2 ORDER BY 1, 2
"""


def _rows(records: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(record) for record in records]


async def stats(pool: Queryable) -> dict[str, Any]:
    return dict(await pool.fetchrow(STATS))


async def jobs(pool: asyncpg.Pool, limit: int, before: int | None) -> list[dict[str, Any]]:
    """Newest first by block height; `before` is exclusive.

    A height may hold retired jobs beside its current one; a page always ends
    with every job of its last height (so it may hold a few more than
    `limit`), or the next page, which starts below that height, would skip some.
    """
    return _rows(
        await pool.fetch(
            f"""
            WITH page AS (
              SELECT block_height FROM job WHERE ($1::bigint IS NULL OR block_height < $1)
              ORDER BY block_height DESC LIMIT $2
            )
            SELECT {JOB_COLUMNS} FROM job
            WHERE ($1::bigint IS NULL OR block_height < $1)
              AND block_height >= (SELECT min(block_height) FROM page)
            ORDER BY block_height DESC, id DESC
            """,
            before,
            limit,
        )
    )


async def job(pool: asyncpg.Pool, task_id: uuid.UUID) -> dict[str, Any] | None:
    record = await pool.fetchrow(
        f"SELECT {JOB_COLUMNS}, "
        "(SELECT count(*) FROM solution s WHERE s.task_id = job.task_id) AS solution_count "
        "FROM job WHERE task_id = $1",
        task_id,
    )
    return None if record is None else dict(record)


async def solutions(
    pool: asyncpg.Pool, task_id: uuid.UUID, limit: int, before: int | None
) -> list[dict[str, Any]]:
    """A task's solutions, newest first by id; `before` is an exclusive id."""
    return _rows(
        await pool.fetch(
            f"SELECT {SOLUTION_COLUMNS} FROM solution "
            "WHERE task_id = $1 AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            task_id,
            before,
            limit,
        )
    )


async def solutions_at_height(
    pool: asyncpg.Pool,
    height: int,
    min_target: int,
    challenge_digest: str | None,
    after: int,
    limit: int,
) -> list[asyncpg.Record]:
    """Stored solutions for a block height, oldest first from an exclusive id `after`.

    With a `challenge_digest`, only if the height's job has that challenge (jobs
    stored before digests existed match any), as a recovering websocket gets.
    """
    return await pool.fetch(
        "SELECT s.id, s.solution FROM solution s JOIN job j ON j.task_id = s.task_id "
        "WHERE j.block_height = $1 AND j.retired_at IS NULL "
        "AND s.solution_target >= $2 AND s.id > $3 "
        "AND ($5::text IS NULL OR j.challenge_digest IS NULL OR j.challenge_digest = $5) "
        "ORDER BY s.id LIMIT $4",
        height,
        min_target,
        after,
        limit,
        challenge_digest,
    )


async def workers(
    pool: asyncpg.Pool, connected: bool | None, limit: int, before: int | None
) -> list[dict[str, Any]]:
    """Worker connections (one row each), newest first by id."""
    return _rows(
        await pool.fetch(
            f"SELECT {WORKER_COLUMNS} FROM worker "
            "WHERE ($1::bool IS NULL OR (disconnected_at IS NULL) = $1) "
            "AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            connected,
            before,
            limit,
        )
    )


async def worker_stats(
    pool: asyncpg.Pool, hardware_id: str, window_seconds: int
) -> dict[str, Any] | None:
    """Solutions of one hardware id within the window; None if it is unknown."""
    if NUL in hardware_id:
        return None
    record = await pool.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM worker WHERE hardware_id = $1) AS connections,
          (SELECT count(*) FROM worker WHERE hardware_id = $1 AND disconnected_at IS NULL)
            AS connected,
          (SELECT max(last_seen_at) FROM worker WHERE hardware_id = $1) AS last_seen_at,
          (SELECT count(*) FROM solution WHERE hardware_id = $1
             AND created_at > now() - make_interval(secs => $2)) AS solutions,
          (SELECT count(*) FROM solution WHERE hardware_id = $1) AS solutions_total
        """,
        hardware_id,
        float(window_seconds),
    )
    if record["connections"] == 0 and record["solutions_total"] == 0:
        return None
    return dict(record)


async def per_minute(pool: Queryable, minutes: int) -> list[dict[str, Any]]:
    return _rows(await pool.fetch(PER_MINUTE, minutes))


async def busiest(pool: Queryable, window_seconds: int, limit: int) -> list[dict[str, Any]]:
    return _rows(await pool.fetch(BUSIEST, float(window_seconds), limit))


async def instances(pool: Queryable, stale_after_seconds: float) -> list[dict[str, Any]]:
    return _rows(await pool.fetch(INSTANCES, stale_after_seconds))


async def closes_per_minute(pool: Queryable, minutes: int) -> list[dict[str, Any]]:
    return _rows(await pool.fetch(CLOSES_PER_MINUTE, minutes))


# The fleet search looks at the newest connection rows and every open one: a
# bounded scan (primary key backwards, the open-rows partial index) however
# long the table grows, and a connected worker is always found. Per matched
# hardware id, index lookups only (migration 0006). strpos, not ILIKE: no
# wildcards to escape in what an operator types, and faster.
FLEET_SCAN_ROWS = 100_000
FLEET = """
WITH candidate AS (
  (SELECT hardware_id, address, caption, remote_ip, last_seen_at FROM worker
   ORDER BY id DESC LIMIT $3)
  UNION ALL
  (SELECT hardware_id, address, caption, remote_ip, last_seen_at FROM worker
   WHERE disconnected_at IS NULL)
), matched AS (
  SELECT hardware_id, max(last_seen_at) AS seen FROM candidate
  WHERE strpos(lower(hardware_id), lower($1)) > 0 OR strpos(lower(address), lower($1)) > 0
    OR strpos(lower(caption), lower($1)) > 0 OR strpos(lower(remote_ip), lower($1)) > 0
  GROUP BY hardware_id ORDER BY seen DESC, hardware_id LIMIT $2
)
SELECT latest.hardware_id, latest.address, latest.caption, latest.remote_ip,
  latest.disconnected_at IS NULL AS connected,
  CASE WHEN latest.disconnected_at IS NULL THEN latest.connected_at END AS connected_since,
  latest.server_instance AS instance,
  (SELECT count(*) FROM solution s WHERE s.hardware_id = m.hardware_id
     AND s.created_at > now() - interval '1 hour') AS solutions_last_hour,
  (SELECT max(created_at) FROM solution s WHERE s.hardware_id = m.hardware_id)
    AS last_solution_at,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
       'disconnected_at', d.disconnected_at, 'close_code', d.close_code) ORDER BY d.id DESC),
     '[]')
   FROM (SELECT id, disconnected_at, close_code FROM worker w
         WHERE w.hardware_id = m.hardware_id AND w.disconnected_at IS NOT NULL
         ORDER BY w.id DESC LIMIT $4) d) AS recent_disconnects,
  (SELECT max(banned_until) FROM worker_ban b
     WHERE b.kind = 'identity' AND b.key = m.hardware_id AND b.banned_until > now())
    AS banned_until
FROM matched m
CROSS JOIN LATERAL (
  SELECT * FROM worker w WHERE w.hardware_id = m.hardware_id ORDER BY w.id DESC LIMIT 1
) latest
ORDER BY m.seen DESC, m.hardware_id
"""


async def fleet(
    pool: asyncpg.Pool, text: str, limit: int, disconnects: int
) -> list[dict[str, Any]]:
    """Workers (one per hardware id, last seen first) with a connection containing `text`.

    Any case; an empty `text` matches all. The fields shown are the latest connection's.
    """
    if NUL in text:
        return []
    return _rows(await pool.fetch(FLEET, text, limit, FLEET_SCAN_ROWS, disconnects))
