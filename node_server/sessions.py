"""The dashboard's login sessions, and how often an address may try the token.

A session is a random cookie (`secrets.token_urlsafe`) made at each login,
valid for `SESSION_SECONDS` or until its logout. Postgres holds it (table
`admin_session`), so every node_server process and replica behind one load
balancer accepts it; the row holds an HMAC of the cookie under the admin
token, never the cookie, so a copy of the table opens nothing and a new
`admin_token` ends every session. At most `MAX_SESSIONS` live at once: a
login beyond that ends the oldest.

Failed logins are counted per address (an IPv6 address by its /64, which one
host can fill) in memory, per process: `LOGIN_FAILURES` within
`LOGIN_WINDOW_SECONDS` and the address is answered 429 until the oldest of
them is that old.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

import asyncpg
from aiohttp import web
from pydantic import SecretStr

SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000
LOGIN_FAILURES = 5
LOGIN_WINDOW_SECONDS = 60.0
# Addresses whose failures are remembered; beyond it the longest quiet is forgotten.
MAX_ADDRESSES = 10_000

OPEN = """
WITH expired AS (DELETE FROM admin_session WHERE expires_at <= now())
INSERT INTO admin_session (digest, expires_at) VALUES ($1, now() + make_interval(secs => $2))
"""
# The oldest beyond the newest MAX_SESSIONS; run after each login.
TRIM = """
DELETE FROM admin_session WHERE digest IN
  (SELECT digest FROM admin_session ORDER BY expires_at DESC OFFSET $1)
"""
VALID = "SELECT 1 FROM admin_session WHERE digest = $1 AND expires_at > now()"
CLOSE = "DELETE FROM admin_session WHERE digest = $1"


def _digest(token: SecretStr, cookie: str) -> bytes:
    key = token.get_secret_value().encode("utf-8", "surrogateescape")
    # surrogateescape: a cookie header's bytes that were not UTF-8 must not raise here.
    return hmac.new(key, cookie.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


async def open_session(pool: asyncpg.Pool, token: SecretStr) -> str:
    """A new session's cookie value."""
    cookie = secrets.token_urlsafe(32)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(OPEN, _digest(token, cookie), float(SESSION_SECONDS))
        await connection.execute(TRIM, MAX_SESSIONS)
    return cookie


async def session_valid(pool: asyncpg.Pool, token: SecretStr, cookie: str) -> bool:
    return await pool.fetchval(VALID, _digest(token, cookie)) is not None


async def close_session(pool: asyncpg.Pool, token: SecretStr, cookie: str) -> None:
    if cookie:
        await pool.execute(CLOSE, _digest(token, cookie))


def address_key(remote: str | None) -> str:
    """Whose attempts these are: the address, or an IPv6 address's /64."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or ""
    if address.version == 6 and not address.is_loopback:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class LoginAttempts:
    """Failed logins per address in the last `LOGIN_WINDOW_SECONDS`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, remote: str | None) -> int | None:
        """Seconds until `remote` may try again, or None when it may now."""
        failed = self.failures.get(address_key(remote))
        if failed is None or len(self._forget_old(failed)) < LOGIN_FAILURES:
            return None
        return max(1, math.ceil(failed[0] + LOGIN_WINDOW_SECONDS - self.clock()))

    def failed(self, remote: str | None) -> None:
        key = address_key(remote)
        failed = self.failures.setdefault(key, deque(maxlen=LOGIN_FAILURES))
        self._forget_old(failed).append(self.clock())
        self.failures.move_to_end(key)
        while len(self.failures) > MAX_ADDRESSES:
            self.failures.popitem(last=False)

    def _forget_old(self, failed: deque[float]) -> deque[float]:
        while failed and failed[0] <= self.clock() - LOGIN_WINDOW_SECONDS:
            failed.popleft()
        return failed


LOGIN_ATTEMPTS = web.AppKey("login_attempts", LoginAttempts)
