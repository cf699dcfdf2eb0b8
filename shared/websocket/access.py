"""Who may connect and how fast: bearer tokens, and the token buckets of the rate limits."""

from __future__ import annotations

import collections
import contextlib
import hashlib
import hmac
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from time import monotonic

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
    """`rate` tokens a second, held up to `burst`: how fast a client may go.

    On the path of every frame, so it is kept to a clock read and a few floats.
    """

    __slots__ = ("burst", "clock", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def _refill(self) -> float:
        now = self.clock()
        tokens = self.tokens + (now - self.updated) * self.rate
        self.updated = now
        return tokens if tokens < self.burst else self.burst

    def take(self, amount: float = 1.0) -> bool:
        """Spend `amount` if the bucket holds that much; else spend nothing, False."""
        tokens = self._refill()
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True

    def owe(self, amount: float) -> float:
        """Spend `amount`, into debt if need be: the seconds until the debt is paid (0 if none)."""
        tokens = self._refill() - amount
        self.tokens = tokens
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def full(self) -> bool:
        return self._refill() >= self.burst


class AddressBuckets:
    """One byte bucket per remote address, shared by all its connections.

    A bucket outlives its address's last connection until it would be full
    again, so closing and reconnecting buys no fresh burst; then it is
    forgotten (checked as other addresses come), so memory follows the
    addresses seen lately.
    """

    def __init__(
        self, rate: float, burst: float, block: Callable[[str], str] = lambda remote: remote
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.block = block  # what counts as one address: its /64, say
        self._buckets: dict[str, TokenBucket] = {}
        self._holders: collections.Counter[str] = collections.Counter()
        self._idle: collections.deque[str] = collections.deque()  # oldest left first

    @contextlib.contextmanager
    def held(self, remote: str) -> Iterator[TokenBucket]:
        """`remote`'s bucket while one of its connections is open."""
        remote = self.block(remote)
        self._forget_idle()
        bucket = self._buckets.get(remote)
        if bucket is None:
            bucket = self._buckets[remote] = TokenBucket(self.rate, self.burst)
        self._holders[remote] += 1
        try:
            yield bucket
        finally:
            self._holders[remote] -= 1
            if self._holders[remote] <= 0:
                del self._holders[remote]
                self._idle.append(remote)

    def _forget_idle(self) -> None:
        """Drop the buckets of addresses gone quiet, a few per call (amortised)."""
        for _ in range(min(2, len(self._idle))):
            remote = self._idle.popleft()
            if remote in self._holders:
                continue  # connected again: queued again when it leaves
            bucket = self._buckets.get(remote)
            if bucket is None or bucket.full():
                self._buckets.pop(remote, None)
            else:
                self._idle.append(remote)

    def __len__(self) -> int:
        return len(self._buckets)


ADDRESS_BUCKETS = web.AppKey("address_buckets", AddressBuckets)
