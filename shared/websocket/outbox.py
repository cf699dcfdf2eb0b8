"""What the server sends one client: written at once, or queued for one sender task.

A frame is written straight into the socket while it keeps up; otherwise it
waits in a bounded queue drained by one sender task, so a broadcast never
waits on a slow client. A client whose queue fills up is dropped (1008 "slow
consumer" recorded) instead of growing server memory.

Jobs (`send_newest`) skip the queue: a busy worker's outbox holds at most one,
the newest, sent before anything else queued; a newer job replaces an unsent
older one (an older job is worthless once a newer one exists). A worker that
lets `queue_size` jobs be replaced in a row without taking one is slow.

Many frames at once that are not live (a node's recovery: `send_paced`) wait
for the queue instead of filling it: they take at most half of it and go out
as fast as the client reads, so the burst never makes the client look slow
and live frames always find room.

Direct writes bypass aiohttp's frame writer (`text_frame` frames them here):
pyproject.toml holds aiohttp to the versions this was checked against, and
tests/integration/test_outbox.py fails if the one in use frames differently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import struct
from collections.abc import Callable, Mapping

from aiohttp import WSMsgType, web

from shared.errors import Close
from shared.metrics import FRAMES_OUT, JOBS_REPLACED
from shared.runtime.tasks import cancelled

log = logging.getLogger(__name__)
# Frames are written straight to the socket while less than this is buffered
# for it; above, they go through the queue, whose sender waits for the drain.
DIRECT_WRITE_LIMIT = 16 * 1024
# A paced sender waiting for room looks this often whether the socket is gone
# (a close with data still buffered for a peer that doesn't read never drains).
ROOM_CHECK_SECONDS = 1.0


class Outbox:
    """One client's outgoing frames: direct writes, a bounded queue and its sender task.

    `dropped` is told the close code when the outbox drops the socket itself
    (1008 for a slow reader, 1001 for a peer gone); `context` gives the fields
    of its log lines.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        queue_size: int,
        role: str,
        *,
        dropped: Callable[[Close], None],
        context: Callable[[], Mapping[str, object]],
    ) -> None:
        self.ws = ws
        self.queue_size = queue_size
        self._dropped = dropped
        self._context = context
        self._queue: collections.deque[bytes] = collections.deque()
        self._newest: bytes | None = None  # a job waiting to be sent, ahead of the queue
        self._replaced = 0  # jobs replaced unsent since one last went out
        self._wakeup = asyncio.Event()
        self._paced_limit = max(1, queue_size // 2)  # the queue's share paced frames take
        self._room = asyncio.Event()  # set when the queue went below `_paced_limit`
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._overflowed = False
        self._sender: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._frames_out = FRAMES_OUT.labels(role=role)  # a child lookup per frame is slow

    def start(self, transport: asyncio.Transport | None, name: str) -> None:
        """Start the sender once `ws` is prepared; `transport` is the request's."""
        # Kept: once aiohttp starts closing, request.transport may already read None
        # while the socket still waits to flush to a peer that doesn't read.
        self._transport = transport
        self._sender = asyncio.create_task(self._send_loop(), name=name)

    async def stop(self) -> None:
        """Stop the sender; what is still queued is never sent."""
        if self._sender is not None:
            await cancelled(self._sender)

    def send(self, frame: bytes) -> None:
        """Send or queue a frame; never blocks. A full queue marks the client as slow."""
        if self._overflowed:
            return
        if not self.backlog and self._write_now(frame):
            return
        if len(self._queue) >= self.queue_size:
            self._slow()
            return
        self._queue.append(frame)
        self._wake()

    def send_newest(self, frame: bytes) -> None:
        """Send a job, or hold it next in line in place of an unsent older one; never blocks."""
        if self._overflowed:
            return
        if not self.backlog and self._write_now(frame):
            return
        if self._newest is not None:
            JOBS_REPLACED.inc()
            self._replaced += 1
            if self._replaced >= self.queue_size:
                self._slow()
                return
        self._newest = frame
        self._wake()

    async def send_paced(self, frame: bytes) -> None:
        """Send like `send`, after waiting while half the queue is taken.

        For many frames at once (a node's recovery); sends nothing once the
        socket is gone.
        """
        while len(self._queue) >= self._paced_limit and not self._gone:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), ROOM_CHECK_SECONDS)
        if not self._gone:
            self.send(frame)

    @property
    def _gone(self) -> bool:
        """Nothing will be sent any more: dropped, sender ended, or the socket closing."""
        transport = self._transport
        return (
            self._overflowed
            or self._sender is None
            or self._sender.done()
            or self.ws.closed
            or transport is None
            or transport.is_closing()
        )

    @property
    def backlog(self) -> bool:
        """Frames are waiting for the sender."""
        return bool(self._queue) or self._newest is not None

    async def flush(self, seconds: float) -> None:
        """Wait up to `seconds` for what is waiting to be handed to the socket."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flushed.wait(), seconds)

    def abort(self) -> None:
        """Drop the socket at once, and whatever is buffered for it."""
        if self._transport is not None:
            self._transport.abort()

    def _wake(self) -> None:
        self._flushed.clear()
        self._wakeup.set()

    def _slow(self) -> None:
        self._overflowed = True
        log.warning("slow_consumer", extra={**self._context(), "code": 1008})
        if self._sender is not None:
            self._sender.cancel()

    def _write_now(self, frame: bytes) -> bool:
        """Write at once when nothing is queued and the socket keeps up.

        The common case of a broadcast then costs one buffered write per
        connection, with no task switch; the frame bytes are shared by all.
        """
        transport = self._transport
        if (
            self._sender is None
            or transport is None
            or self.ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        transport.write(text_frame(frame))
        self._frames_out.inc()
        return True

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self.backlog:
                    if self._newest is not None:  # the newest job before anything queued
                        frame, self._newest = self._newest, None
                        await self.ws.send_frame(frame, WSMsgType.TEXT)
                        self._replaced = 0
                    else:
                        await self.ws.send_frame(self._queue.popleft(), WSMsgType.TEXT)
                        if len(self._queue) < self._paced_limit:
                            self._room.set()
                    self._frames_out.inc()
                self._flushed.set()
        except asyncio.CancelledError:
            if self._overflowed:
                self._drop(Close.POLICY_VIOLATION)
            raise
        except ConnectionError:
            self._drop(Close.GOING_AWAY)
        finally:
            self._room.set()  # a paced sender waiting sees the socket is gone

    def _drop(self, code: Close) -> None:
        """Drop the socket and what is buffered for it, and say so.

        A close frame would wait behind the backlog of a peer that doesn't
        read, holding that memory; and this runs in a cancelled sender, where
        awaiting is no longer reliable. The handler sees the loss and ends.
        """
        self._dropped(code)
        self.abort()


@functools.lru_cache(maxsize=16)
def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed websocket text frame (RFC 6455 §5.2), as servers send.

    Cached: a broadcast frames the same payload once for every connection.
    """
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
