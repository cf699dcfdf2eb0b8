"""Bans at work: stored for every instance, read back, told to the worker, refused at the door."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import NoReturn

from aiohttp import web

from shared.db import POOL
from shared.errors import Close, CloseConnection, DatabaseUnavailable, ErrorCode, count
from shared.runtime.health import add_check
from shared.websocket.connection import Connection
from worker_server.bans import IDENTITY, Ban, Bans
from worker_server.store import active_bans, store_ban

BANS = web.AppKey("bans", Bans)
# The welcomed `WorkerSession`s (worker_server.ws), to close those found banned.
WELCOMED = web.AppKey("welcomed_workers", set)
# How long start-up waits for the stored bans before serving without them (Postgres away).
START_WAIT_SECONDS = 5.0
log = logging.getLogger(__name__)


async def imposed(app: web.Application, bans: list[Ban]) -> None:
    """Store new bans so other instances refuse them too (enforced ones only).

    Postgres down: this instance still enforces them; the others judge for themselves.
    """
    registry = app[BANS]
    if not registry.enforcing:
        return
    for ban in bans:
        try:
            await store_ban(
                app[POOL],
                ban.kind,
                ban.key,
                ban.scope,
                registry.seconds,
                ban.reason,
                registry.settings.server_instance,
            )
        except DatabaseUnavailable as error:
            count(error)
            log.warning("ban_store_failed", extra={"banned": ban.key, "error": str(error)})


def close_banned(connection: Connection, ban: Ban, seconds_left: int) -> NoReturn:
    """Tell the worker why (an error frame it can read), then close 1008 with the reason."""
    connection.send_error(ErrorCode.BANNED, f"{ban.reason}; {seconds_left} s left")
    raise CloseConnection(Close.POLICY_VIOLATION, ban.reason)


def close_banned_soon(connection: Connection, ban: Ban, seconds_left: int) -> None:
    """`close_banned` from outside the connection's handler: it is closed in its own task."""
    connection.send_error(ErrorCode.BANNED, f"{ban.reason}; {seconds_left} s left")
    connection.fail_soon(CloseConnection(Close.POLICY_VIOLATION, ban.reason))


async def refresh(app: web.Application) -> None:
    """Learn the bans stored by every instance; close the welcomed workers now banned."""
    registry = app[BANS]
    for row in await active_bans(app[POOL]):
        registry.learn(row["kind"], row["key"], row["scope"], row["seconds_left"], row["reason"])
    registry.loaded = True
    if any(kind == IDENTITY for kind, _, _ in registry.known):
        for session in list(app[WELCOMED]):
            session.close_if_banned_soon()


async def bans_at_start(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the stored bans in memory before the first handshake.

    Not ready until they were read once; with Postgres away at start-up the
    server starts without them after `START_WAIT_SECONDS`, and `keep_bans` reads them.
    """
    registry = app[BANS]

    async def loaded() -> bool:
        return registry.loaded or not registry.enforcing

    add_check(app, "bans", loaded)
    if registry.enforcing:
        try:
            async with asyncio.timeout(START_WAIT_SECONDS):
                await refresh(app)
        except (DatabaseUnavailable, TimeoutError) as error:
            log.warning("ban_refresh_failed", extra={"error": repr(error)})
    yield


async def keep_bans(app: web.Application) -> None:
    """Forget what expired; learn the bans other instances stored."""
    registry = app[BANS]
    while True:
        await asyncio.sleep(registry.settings.ban_refresh_seconds)
        registry.sweep()
        if not registry.enforcing:
            continue
        try:
            await refresh(app)
        except DatabaseUnavailable as error:
            count(error)
            log.warning("ban_refresh_failed", extra={"error": str(error)})


def refused_banned(ban: Ban, seconds_left: int) -> web.Response:
    """The answer to a handshake from a banned address: 429 before the upgrade."""
    return web.json_response(
        {"error": "banned", "detail": ban.reason},
        status=429,
        headers={"Retry-After": str(seconds_left)},
    )
