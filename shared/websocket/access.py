"""Who may connect and how fast: bearer tokens and the per-connection rate limit."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable, Iterable

from aiohttp import web
from pydantic import SecretStr


def authorized(request: web.Request, tokens: Iterable[SecretStr]) -> bool:
    """Bearer header or ?token= (a browser's websocket can't set headers) against `tokens`."""
    tokens = list(tokens)
    return not tokens or token_matches(bearer(request) or request.query.get("token"), tokens)


def from_loopback(request: web.Request) -> bool:
    """Whether the peer is this machine (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:  # a unix socket or an unknown peer
        return False


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def token_matches(offered: str | None, tokens: Iterable[SecretStr]) -> bool:
    """`offered` against every token in constant time.

    Both sides are hashed first so the comparison does not even leak the
    length of a configured token; every token is compared, match or not.
    """
    if not offered:
        return False
    given = _digest(offered)
    matches = [hmac.compare_digest(given, _digest(t.get_secret_value())) for t in tokens]
    return any(matches)


def _digest(token: str) -> bytes:
    # surrogateescape: header bytes that were not UTF-8 must not raise here.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def unauthorized() -> web.Response:
    return web.json_response(
        {"error": "unauthorized", "detail": "a valid bearer token is required"},
        status=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def forbidden(detail: str) -> web.Response:
    return web.json_response({"error": "forbidden", "detail": detail}, status=403)


class TokenBucket:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled by `now` (on its clock)."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst
