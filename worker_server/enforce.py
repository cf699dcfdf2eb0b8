"""Bans at work: stored for every instance, told to the worker, refused at the door."""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

from aiohttp import web

from shared.db import POOL
from shared.errors import Close, CloseConnection, DatabaseUnavailable, ErrorCode, count
from shared.websocket.connection import Connection
from worker_server.bans import IDENTITY, IP, Ban, Bans
from worker_server.store import address_bans, find_ban, store_ban

BANS = web.AppKey("bans", Bans)
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


async def identity_ban(app: web.Application, identity: str) -> Ban | None:
    """The ban in force on `identity`, imposed here or stored by any instance."""
    registry = app[BANS]
    if not registry.enforcing:
        return None
    if (ban := registry.enforced(IDENTITY, identity)) is not None:
        return ban
    row = await find_ban(app[POOL], IDENTITY, identity)
    if row is None:
        return None
    return registry.learn(IDENTITY, identity, row["seconds_left"], row["reason"])


async def keep_bans(app: web.Application) -> None:
    """Forget what expired; learn the address bans other instances stored.

    Addresses are checked before the upgrade, with no time for a query, so
    they are read ahead; identities are looked up at their welcome.
    """
    registry = app[BANS]
    while True:
        await asyncio.sleep(registry.settings.ban_refresh_seconds)
        registry.sweep()
        if not registry.enforcing:
            continue
        try:
            rows = await address_bans(app[POOL])
        except DatabaseUnavailable as error:
            count(error)
            log.warning("ban_refresh_failed", extra={"error": str(error)})
            continue
        for row in rows:
            registry.learn(IP, row["key"], row["seconds_left"], row["reason"])


def refused_banned(ban: Ban, seconds_left: int) -> web.Response:
    """The answer to a handshake from a banned address: 429 before the upgrade."""
    return web.json_response(
        {"error": "banned", "detail": ban.reason},
        status=429,
        headers={"Retry-After": str(seconds_left)},
    )
