"""The dashboard document, built once per interval per process and shared by every reader.

Every event stream and every `GET /api/dashboard` of a process reads the same
build. One owned background task makes it, every `dashboard_interval_seconds`
while anyone reads and never otherwise, on a single pooled connection under a
statement timeout: however many dashboards are open, the document costs one
set of queries per interval, and the read API, the height guard and recovery
keep the rest of the pool. Streams are capped (`max_dashboard_streams`); a
refused page polls `/api/dashboard`, which reads the same build.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import web

from node_server.dashboard_models import Dashboard
from shared.errors import DatabaseUnavailable, unavailable
from shared.metrics import DASHBOARD_BUILDS, DASHBOARD_STREAMS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Built:
    """One build: the document (or why there is none) and its server-sent event."""

    number: int
    at: float  # time.monotonic()
    event: bytes
    document: Dashboard | None
    error: BaseException | None


class DashboardFeed:
    """The latest build, who waits for the next one, and how many streams are open."""

    def __init__(self, interval: float, max_streams: int) -> None:
        self.interval = interval
        self.max_streams = max_streams
        self.streams = 0
        self.latest: Built | None = None
        self._readers = 0
        self._wanted = asyncio.Event()  # set while anyone reads: the builder works
        self._published = asyncio.Event()  # replaced at every build: wakes the waiting
        self._closed = False

    def full(self) -> bool:
        return self.streams >= self.max_streams

    @contextlib.contextmanager
    def reading(self, stream: bool = False) -> Iterator[None]:
        """Count a reader (a stream, or a poll waiting for a build) while the block runs."""
        self._readers += 1
        self.streams += stream
        DASHBOARD_STREAMS.inc(stream)
        self._wanted.set()
        try:
            yield
        finally:
            self._readers -= 1
            self.streams -= stream
            DASHBOARD_STREAMS.dec(stream)
            if not self._readers:
                self._wanted.clear()

    def fresh(self) -> Built | None:
        """The latest build if it is less than an interval old."""
        latest = self.latest
        if latest is not None and time.monotonic() - latest.at < self.interval:
            return latest
        return None

    def seen_before_joining(self) -> int:
        """What a new reader counts as seen: all but a fresh build, sent to it at once."""
        fresh = self.fresh()
        if fresh is not None:
            return fresh.number - 1
        return self.latest.number if self.latest is not None else 0

    async def after(self, number: int) -> Built | None:
        """The first build newer than `number`, once there is one; None once closed."""
        while not self._closed:
            latest = self.latest
            if latest is not None and latest.number > number:
                return latest
            await self._published.wait()
        return None

    def publish(self, built: Built) -> None:
        self.latest = built
        published, self._published = self._published, asyncio.Event()
        published.set()

    def close(self) -> None:
        """Shutdown: every waiting reader is answered None, and no stream stays open."""
        self._closed = True
        self._published.set()

    async def wanted(self) -> None:
        await self._wanted.wait()


async def keep_building(feed: DashboardFeed, build: Callable[[], Awaitable[Dashboard]]) -> None:
    """The feed's one builder: a build per interval while anyone reads, idle otherwise."""
    number = feed.latest.number if feed.latest is not None else 0
    while True:
        await feed.wanted()
        number += 1
        feed.publish(await _built(number, build))
        DASHBOARD_BUILDS.inc()
        await asyncio.sleep(feed.interval)


async def _built(number: int, build: Callable[[], Awaitable[Dashboard]]) -> Built:
    try:
        document = await build()
    except Exception as error:  # the page shows it; the next build may succeed
        failure = unavailable(error, DatabaseUnavailable)
        if failure is None:
            log.exception("dashboard_build_failed")
        event = b"event: error\ndata: " + str(error)[:200].encode() + b"\n\n"
        return Built(number, time.monotonic(), event, None, failure or error)
    event = b"event: dashboard\ndata: " + document.model_dump_json().encode() + b"\n\n"
    return Built(number, time.monotonic(), event, document, None)


FEED = web.AppKey("dashboard_feed", DashboardFeed)
