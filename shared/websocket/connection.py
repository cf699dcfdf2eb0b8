"""Websocket plumbing both servers share: auth, limits, the outbox, closing.

A frame is written at once while the socket keeps up; otherwise it waits in a
bounded queue drained by one sender task, so a broadcast never waits on a
slow client. A client whose queue fills up is dropped (1008 "slow consumer"
recorded) instead of growing server memory.

Jobs (`send_newest`) skip the queue: a busy worker's outbox holds at most one,
the newest, sent before anything else queued; a newer job replaces an unsent
older one (an older job is worthless once a newer one exists). A worker that
lets `send_queue_size` jobs be replaced in a row without taking one is slow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import struct
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web

from shared.errors import INTERNAL, Close, CloseConnection, answer, count
from shared.metrics import CLOSES, FRAMES_IN, FRAMES_OUT, INVALID_FRAMES, JOBS_REPLACED
from shared.protocol import error_frame
from shared.settings import WebsocketServerSettings
from shared.websocket.access import TokenBucket, authorized, unauthorized

__all__ = ["OPEN_SOCKETS", "Connection", "authorized", "close_all", "text_frame", "unauthorized"]

log = logging.getLogger(__name__)
_connection_ids = itertools.count(1)
CLOSE_TIMEOUT_SECONDS = 2.0
# Frames are written straight to the socket while less than this is buffered
# for it; above, they go through the outbox, whose sender waits for the drain.
DIRECT_WRITE_LIMIT = 16 * 1024


class Connection:
    """One client websocket: bounded outbox, sender task, limits and close bookkeeping."""

    def __init__(self, request: web.Request, settings: WebsocketServerSettings, role: str) -> None:
        self.id = next(_connection_ids)
        self.role = role
        self.remote = request.remote or "unknown"
        self.request = request
        self.settings = settings
        self.ws = web.WebSocketResponse(
            heartbeat=settings.heartbeat_seconds,
            compress=False,  # broadcast frames are sent as-is; per-socket deflate costs CPU
            max_msg_size=settings.max_message_bytes,
            decode_text=False,
        )
        self.close_code: int | None = None
        self.hardware_id: str | None = None  # a worker's, once welcomed: in every log line
        self._outbox: collections.deque[bytes] = collections.deque()
        self._newest: bytes | None = None  # a job waiting to be sent, ahead of the outbox
        self._replaced = 0  # jobs replaced unsent since one last went out
        self._wakeup = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._overflowed = False
        self._sender: asyncio.Task[None] | None = None
        self._failing: asyncio.Task[None] | None = None  # see fail_soon
        self._ending = False
        self._transport: asyncio.Transport | None = None
        self._bucket = TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
        self._invalid = 0
        self._frames_out = FRAMES_OUT.labels(role=role)  # a child lookup per frame is slow
        self._frames_in = FRAMES_IN.labels(role=role)

    @property
    def log_context(self) -> dict[str, object]:
        context: dict[str, object] = {
            "connection_id": self.id,
            "remote": self.remote,
            "role": self.role,
        }
        if self.hardware_id is not None:
            context["hardware_id"] = self.hardware_id
        return context

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Connection]:
        """Upgrade, run the sender while the body runs, then close and record the code.

        A failure in the body closes this connection only, with the answer the
        error catalogue (`shared.errors`) gives it.
        """
        await self.ws.prepare(self.request)
        # Kept: once aiohttp starts closing, request.transport may already read None
        # while the socket still waits to flush to a peer that doesn't read.
        self._transport = self.request.transport
        self._sender = asyncio.create_task(self._send_loop(), name=f"ws-sender-{self.id}")
        try:
            yield self
        except CloseConnection as close:
            await self.close(close.code, close.reason)
        except Exception as error:
            await self._fail(error)
        finally:
            self._ending = True
            if self._failing is not None:
                await self._failing  # bounded: close() gives up and aborts
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            if not self.ws.closed:
                await self.close(Close.GOING_AWAY, "connection ended")
            if self.close_code is None:
                self.close_code = self.ws.close_code

    def fail_soon(self, error: Exception) -> None:
        """Answer a failure raised outside the handler (the fan-out's `offer`).

        Closing waits, and the caller must not: the close runs in a task of
        this connection, awaited before the connection ends. Only the first
        failure is answered.
        """
        if self._failing is None and not self._ending:
            self._failing = asyncio.create_task(self._fail(error), name=f"ws-fail-{self.id}")

    async def _fail(self, error: Exception) -> None:
        failure = answer(error)
        if failure is INTERNAL:  # a bug of ours: log it once, tell the client, serve others
            log.error("connection_failed", exc_info=error, extra=self.log_context)
        else:
            count(error)
            log.error(
                "dependency_unavailable",
                extra={**self.log_context, "dependency": failure.dependency, "error": str(error)},
            )
        await self.close(failure.close, failure.close_reason(error))

    def send(self, frame: bytes) -> None:
        """Send or queue a frame; never blocks. A full queue marks the client as slow."""
        if self._overflowed:
            return
        if not self._backlog and self._write_now(frame):
            return
        if len(self._outbox) >= self.settings.send_queue_size:
            self._slow()
            return
        self._outbox.append(frame)
        self._wake()

    def send_newest(self, frame: bytes) -> None:
        """Send a job, or hold it next in line in place of an unsent older one; never blocks."""
        if self._overflowed:
            return
        if not self._backlog and self._write_now(frame):
            return
        if self._newest is not None:
            JOBS_REPLACED.inc()
            self._replaced += 1
            if self._replaced >= self.settings.send_queue_size:
                self._slow()
                return
        self._newest = frame
        self._wake()

    @property
    def _backlog(self) -> bool:
        return bool(self._outbox) or self._newest is not None

    def _wake(self) -> None:
        self._flushed.clear()
        self._wakeup.set()

    def _slow(self) -> None:
        self._overflowed = True
        log.warning("slow_consumer", extra={**self.log_context, "code": 1008})
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

    def send_error(self, code: str, detail: str) -> None:
        self.send(error_frame(code, detail))

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._backlog:
                    if self._newest is not None:  # the newest job before anything queued
                        frame, self._newest = self._newest, None
                        await self.ws.send_frame(frame, WSMsgType.TEXT)
                        self._replaced = 0
                    else:
                        await self.ws.send_frame(self._outbox.popleft(), WSMsgType.TEXT)
                    self._frames_out.inc()
                self._flushed.set()
        except asyncio.CancelledError:
            if self._overflowed:
                self._abort(Close.POLICY_VIOLATION)
            raise
        except ConnectionError:
            self._abort(Close.GOING_AWAY)

    def _abort(self, code: Close) -> None:
        """Drop the socket and what is buffered for it.

        A close frame would wait behind the backlog of a peer that doesn't
        read, holding that memory; and this runs in a cancelled sender, where
        awaiting is no longer reliable. The handler sees the loss and ends.
        """
        self.close_code = code
        CLOSES.labels(role=self.role, code=str(int(code))).inc()
        if self._transport is not None:
            self._transport.abort()

    async def close(self, code: Close, reason: str) -> None:
        """Send what is queued (briefly), then the close frame; drop the socket if stuck."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._flushed.wait(), 0.5)
        if self.close_code is None:
            self.close_code = code
            CLOSES.labels(role=self.role, code=str(int(code))).inc()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()[:120]), CLOSE_TIMEOUT_SECONDS
            )
        if not self.ws.closed and self._transport is not None:
            self._transport.abort()

    async def receive(self) -> bytes | None:
        """The next data frame from the client, rate-limited; None once it closed."""
        message = await self.ws.receive()
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            # aiohttp answers an oversize frame with 1009, but its close_code may then
            # read 1006 (the closing handshake cut short); the error says what it was.
            too_big = getattr(message.data, "code", None) == Close.MESSAGE_TOO_BIG
            if too_big and self.close_code is None:
                self.close_code = Close.MESSAGE_TOO_BIG
                CLOSES.labels(role=self.role, code=str(int(Close.MESSAGE_TOO_BIG))).inc()
            return None
        self._frames_in.inc()
        if not self._bucket.take():
            raise CloseConnection(Close.POLICY_VIOLATION, "rate limit")
        data = message.data
        return data if isinstance(data, bytes) else data.encode()

    async def invalid(self, code: str, detail: str) -> None:
        """Answer an invalid frame; too many of them close the connection."""
        INVALID_FRAMES.labels(role=self.role).inc()
        self._invalid += 1
        self.send_error(code, detail)
        if self._invalid >= self.settings.max_invalid_messages:
            raise CloseConnection(Close.POLICY_VIOLATION, "too many invalid messages")


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


OPEN_SOCKETS = web.AppKey("open_sockets", set)  # the app's open `Connection`s


async def close_all(app: web.Application) -> None:
    """on_shutdown: tell every client 1001, all at once (each close may wait)."""
    connections: set[Connection] = app[OPEN_SOCKETS]
    await asyncio.gather(
        *(c.close(Close.GOING_AWAY, "server shutting down") for c in list(connections)),
        return_exceptions=True,
    )
