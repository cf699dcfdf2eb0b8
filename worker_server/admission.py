"""Connection caps of worker_server, enforced before the websocket upgrade.

A refused client gets HTTP 503 with a JSON body instead of an upgraded socket
closed with 1013: refusing costs no upgrade, no sender task and no close
handshake (which may wait seconds on a peer that never answers), so a flood
of connections is turned away at the price of one small HTTP response each.
Check and count happen without an await in between, so no burst can slip
past the cap while earlier upgrades are still in progress.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator

from aiohttp import web

RETRY_AFTER_SECONDS = 5


class Admission:
    """Counts open (and upgrading) connections in total and per remote address."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self.per_ip: collections.Counter[str] = collections.Counter()

    def refusal(self, remote: str) -> str | None:
        """Why a new connection from `remote` is refused, or None to admit it."""
        if self.total >= self.max_total:
            return "capacity"
        if self.per_ip[remote] >= self.max_per_ip:
            return "per_ip"
        return None

    @contextlib.contextmanager
    def holding(self, remote: str) -> Iterator[None]:
        """Count the connection while the block runs."""
        self.total += 1
        self.per_ip[remote] += 1
        try:
            yield
        finally:
            self.total -= 1
            self.per_ip[remote] -= 1
            if self.per_ip[remote] <= 0:
                del self.per_ip[remote]


DETAILS = {
    "capacity": "server at connection capacity",
    "per_ip": "too many connections from this address",
}


def refused(reason: str) -> web.Response:
    return web.json_response(
        {"error": "unavailable", "reason": reason, "detail": DETAILS[reason]},
        status=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
