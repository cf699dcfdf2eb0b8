"""Retention: rows older than `retention_days` are deleted.

Solutions and closed worker rows by age; bans that ended, and instances not
heard of, that long ago.

In small batches, each its own short statement, so the inserts of live
traffic never wait behind one long delete. Accounting reads what is kept:
export anything older before it goes (docs/operations.md, "Retention").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from aiohttp import web

from shared.db import POOL
from shared.metrics import PRUNED

PRUNE = {
    "solution": """
        DELETE FROM solution WHERE id IN (
            SELECT id FROM solution WHERE created_at < now() - make_interval(days => $1)
            ORDER BY id LIMIT $2)
    """,
    "worker": """
        DELETE FROM worker WHERE id IN (
            SELECT id FROM worker
            WHERE disconnected_at < now() - make_interval(days => $1)
            ORDER BY id LIMIT $2)
    """,
    # No id column: ctid picks the batch's rows.
    "worker_ban": """
        DELETE FROM worker_ban WHERE ctid IN (
            SELECT ctid FROM worker_ban
            WHERE banned_until < now() - make_interval(days => $1) LIMIT $2)
    """,
    "instance": """
        DELETE FROM instance WHERE ctid IN (
            SELECT ctid FROM instance
            WHERE heartbeat_at < now() - make_interval(days => $1) LIMIT $2)
    """,
}
BATCH_ROWS = 1000
BATCH_PAUSE_SECONDS = 0.05
RETENTION_INTERVAL_SECONDS = 3600.0
log = logging.getLogger(__name__)


async def prune_once(pool: asyncpg.Pool, days: int, batch_rows: int = BATCH_ROWS) -> dict[str, int]:
    """Delete what is older than `days`, batch by batch; returns the rows deleted per table."""
    deleted = {}
    for table, statement in PRUNE.items():
        deleted[table] = 0
        while True:
            status = await pool.execute(statement, days, batch_rows)
            count = int(status.split()[-1])
            deleted[table] += count
            PRUNED.labels(table=table).inc(count)
            if count < batch_rows:
                break
            await asyncio.sleep(BATCH_PAUSE_SECONDS)
    return deleted


def keep_pruning(days: int) -> Callable[[web.Application], Coroutine[Any, Any, None]]:
    """The background task: prune at start-up, then every hour."""

    async def run(app: web.Application) -> None:
        while True:
            deleted = await prune_once(app[POOL], days)
            if any(deleted.values()):
                log.info("retention_pruned", extra={"deleted": deleted, "days": days})
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

    return run
