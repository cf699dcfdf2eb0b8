"""Connection caps and handshake rates of worker_server, enforced before the websocket upgrade.

A refused client gets an HTTP answer with a JSON body instead of an upgraded
socket closed with 1013: refusing costs no upgrade, no sender task and no close
handshake (which may wait seconds on a peer that never answers), so a flood
of connections is turned away at the price of one small HTTP response each.
Check and count happen without an await in between, so no burst can slip
past the cap while earlier upgrades are still in progress.

Addresses count by block, the /24 (IPv4) or /64 (IPv6) around them
(`address_block`): whoever holds a /64 has 2^64 addresses to rotate through.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import ipaddress
import math
import time
from collections.abc import Callable, Iterator

from aiohttp import web

from shared.errors import ErrorCode
from shared.websocket.access import TokenBucket
from worker_server.settings import WorkerServerSettings

RETRY_AFTER_SECONDS = 5
SWEEP_AT_BUCKETS = 1024


def address_block(remote: str, settings: WorkerServerSettings) -> str:
    """The block `remote` counts as, e.g. "198.51.100.0/24"; an unparsable one as itself."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    length = settings.address_prefix_ipv4 if address.version == 4 else settings.address_prefix_ipv6
    return str(ipaddress.ip_network(f"{address}/{length}", strict=False))


class Admission:
    """Counts open (and upgrading) connections in total and per address block."""

    def __init__(self, max_total: int, max_per_block: int) -> None:
        self.max_total = max_total
        self.max_per_block = max_per_block
        self.total = 0
        self.per_block: collections.Counter[str] = collections.Counter()

    def refusal(self, block: str) -> str | None:
        """Why a new connection from `block` is refused, or None to admit it."""
        if self.total >= self.max_total:
            return "capacity"
        if self.per_block[block] >= self.max_per_block:
            return "per_ip"
        return None

    @contextlib.contextmanager
    def holding(self, block: str) -> Iterator[None]:
        """Count the connection while the block runs."""
        self.total += 1
        self.per_block[block] += 1
        try:
            yield
        finally:
            self.total -= 1
            self.per_block[block] -= 1
            if self.per_block[block] <= 0:
                del self.per_block[block]


class HandshakeRate:
    """A token bucket of handshakes per address block.

    Buckets that filled up again are forgotten whenever their number doubled
    since the last sweep: memory follows the blocks handshaking lately, at a
    cost per handshake that stays constant on average.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate  # for Retry-After
        self.clock = clock
        self.new_bucket = functools.partial(TokenBucket, rate, burst, clock)
        self.buckets: dict[str, TokenBucket] = {}
        self.sweep_at = SWEEP_AT_BUCKETS

    def take(self, block: str) -> bool:
        """True when a handshake from `block` may go on (and counted)."""
        bucket = self.buckets.get(block)
        if bucket is None:
            if len(self.buckets) >= self.sweep_at:
                self.sweep()
                self.sweep_at = max(SWEEP_AT_BUCKETS, 2 * len(self.buckets))
            bucket = self.buckets[block] = self.new_bucket()
        return bucket.take()

    def retry_after(self, block: str) -> int:
        """Whole seconds until `block` has a handshake again: short, 1 to 5."""
        bucket = self.buckets.get(block)
        missing = 0.0 if bucket is None else 1 - bucket.tokens
        return min(RETRY_AFTER_SECONDS, max(1, math.ceil(missing / self.rate)))

    def sweep(self) -> None:
        """Forget buckets that have filled up again: they would admit as a new one does."""
        for block in [b for b, bucket in self.buckets.items() if bucket.full()]:
            del self.buckets[block]


DETAILS = {
    "overloaded": "server overloaded: try again shortly",
    "capacity": "server at connection capacity",
    "per_ip": "too many connections from this address",
}


def refused(reason: str) -> web.Response:
    return web.json_response(
        {"error": "unavailable", "reason": reason, "detail": DETAILS[reason]},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def refused_handshake(retry_after: int) -> web.Response:
    """Too many handshakes from one block: 429, come back in a few seconds."""
    return web.json_response(
        {
            "error": ErrorCode.RATE_LIMITED,
            "reason": "handshake_rate",
            "detail": "too many handshakes from this address",
        },
        status=429,
        headers={"Retry-After": str(retry_after)},
    )
