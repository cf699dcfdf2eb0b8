"""Keeps the worker table honest: last_seen_at in batches, left-open rows closed."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from shared.backoff import Backoff
from shared.db import POOL
from shared.errors import DatabaseUnavailable, count
from worker_server.store import close_rows_left_open, close_stale_rows, touch_worker_rows
from worker_server.ws import OPEN_ROWS, SETTINGS

log = logging.getLogger(__name__)


async def close_rows_left_open_at_start(app: web.Application) -> None:
    """Once per start (a task that returns is not run again): rows a crashed
    previous run of this instance left open. Never repeated on a restart of the
    sweep, which would close the rows of the workers connected right now."""
    settings = app[SETTINGS]
    backoff = Backoff(maximum=settings.liveness_interval_seconds)
    while True:
        try:
            closed = await close_rows_left_open(app[POOL], settings.server_instance)
            break
        except DatabaseUnavailable as error:
            count(error)
            log.warning("worker_rows_cleanup_failed", extra={"error": str(error)})
            await backoff.sleep()
    log.info("worker_rows_left_open_closed", extra={"count": closed})


async def keep_worker_rows(app: web.Application) -> None:
    """One sweep for all connections (no per-connection timers)."""
    settings = app[SETTINGS]
    pool = app[POOL]
    while True:
        await asyncio.sleep(settings.liveness_interval_seconds)
        try:
            await touch_worker_rows(pool, list(app[OPEN_ROWS]))
            stale = await close_stale_rows(pool, settings.stale_after_seconds)
        except DatabaseUnavailable as error:
            count(error)
            log.warning("worker_rows_refresh_failed", extra={"error": str(error)})
            continue
        if stale:
            log.info("stale_worker_rows_closed", extra={"count": stale})
