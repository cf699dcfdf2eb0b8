"""Keeps the worker table honest: last_seen_at in batches, stale rows closed."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from shared.db import POOL
from shared.errors import DatabaseUnavailable, count
from worker_server.store import close_stale_rows, touch_worker_rows
from worker_server.ws import SETTINGS, WORKER_ROWS

log = logging.getLogger(__name__)


async def keep_worker_rows(app: web.Application) -> None:
    """One sweep for all connections (no per-connection timers)."""
    settings = app[SETTINGS]
    pool = app[POOL]
    while True:
        await asyncio.sleep(settings.liveness_interval_seconds)
        try:
            await touch_worker_rows(pool, app[WORKER_ROWS].open_ids())
            stale = await close_stale_rows(pool, settings.stale_after_seconds)
        except DatabaseUnavailable as error:
            count(error)
            log.warning("worker_rows_refresh_failed", extra={"error": str(error)})
            continue
        if stale:
            log.info("stale_worker_rows_closed", extra={"count": stale})
