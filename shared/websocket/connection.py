"""One client websocket: opened, read, closed, and its close code recorded once.

What the server sends goes through the connection's `Outbox`
(`shared.websocket.outbox`); this module upgrades the request, reads frames
(rate-limited, invalid ones counted), answers failures through the error
catalogue (`shared.errors`) and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator

from aiohttp import WSMsgType, web

from shared.errors import INTERNAL, Close, CloseConnection, answer, count
from shared.metrics import CLOSES, FRAMES_IN, FRAMES_PACED, INVALID_FRAMES
from shared.protocol import error_frame
from shared.websocket.access import ADDRESS_BUCKETS, TokenBucket
from shared.websocket.outbox import Outbox
from shared.websocket.settings import WebsocketServerSettings

log = logging.getLogger(__name__)
# What a frame costs its address's byte budget at least: many tiny frames are
# paced like their bytes would be, so an address's frames are bounded too
# (about 1,000 a second at the default 256 KiB/s; a real frame is ~300 bytes).
FRAME_FLOOR_BYTES = 256
_connection_ids = itertools.count(1)
# What is queued (an error frame saying why the close comes, say) gets this long
# to go out before the close frame: plenty for a client that reads, and short,
# since a client that doesn't must not hold up the close (a shutdown closes
# every connection at once, within its deadline).
FLUSH_BEFORE_CLOSE_SECONDS = 0.5
# Then the closing handshake gets this long before the socket is dropped.
CLOSE_TIMEOUT_SECONDS = 2.0
# Frames already buffered are read without the loop turning; after this many bytes
# of them the reader lets the loop turn, so one busy socket can't hold it.
YIELD_AFTER_BYTES = 16384


class Connection:
    """One client websocket: its outbox, limits and close bookkeeping."""

    def __init__(self, request: web.Request, settings: WebsocketServerSettings, role: str) -> None:
        self.id = next(_connection_ids)
        self.role = role
        self.remote = request.remote or "unknown"
        self.request = request
        self.settings = settings
        self.ws = web.WebSocketResponse(
            heartbeat=settings.heartbeat_seconds,
            # Broadcast frames are sent as-is (per-socket deflate costs CPU), and
            # the outbox writes them uncompressed straight into the socket.
            compress=False,
            max_msg_size=settings.max_message_bytes,
            decode_text=False,
        )
        self.outbox = Outbox(
            self.ws,
            settings.send_queue_size,
            role,
            dropped=self._closed,
            context=lambda: self.log_context,
        )
        self.close_code: int | None = None
        self.hardware_id: str | None = None  # a worker's, once welcomed: in every log line
        self._failing: asyncio.Task[None] | None = None  # see fail_soon
        self._ending = False
        self._bucket = TokenBucket(settings.rate_limit_per_second, settings.rate_limit_burst)
        self._bytes = TokenBucket(
            settings.rate_limit_bytes_per_second, settings.rate_limit_bytes_burst
        )
        self._address: TokenBucket | None = None  # the remote's, while open (see open)
        self._unyielded = 0
        self._first_frame = True
        self._invalid = 0
        self._frames_in = FRAMES_IN.labels(role=role)  # a child lookup per frame is slow
        self._frames_paced = FRAMES_PACED.labels(role=role)

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
        """Upgrade, run the outbox's sender while the body runs, then close and record the code.

        A failure in the body closes this connection only, with the answer the
        error catalogue (`shared.errors`) gives it.
        """
        await self.ws.prepare(self.request)
        self.outbox.start(self.request.transport, name=f"ws-sender-{self.id}")
        addresses = self.request.app.get(ADDRESS_BUCKETS)
        try:
            with contextlib.ExitStack() as held:
                if addresses is not None:
                    self._address = held.enter_context(addresses.held(self.remote))
                yield self
        except CloseConnection as close:
            await self.close(close.code, close.reason)
        except Exception as error:
            await self._fail(error)
        finally:
            self._ending = True
            if self._failing is not None:
                await self._failing  # bounded: close() gives up and aborts
            await self.outbox.stop()
            if not self.ws.closed:
                await self.close(Close.GOING_AWAY, "connection ended")
            if self.close_code is None:  # the client closed: its code, not counted
                self.close_code = self.ws.close_code

    def fail_soon(self, error: Exception) -> None:
        """Answer a failure raised outside the handler (the fan-out feeding it), or
        close with a `CloseConnection` decided there.

        Closing waits, and the caller must not: the close runs in a task of
        this connection, awaited before the connection ends. Only the first
        failure is answered.
        """
        if self._failing is None and not self._ending:
            self._failing = asyncio.create_task(self._fail(error), name=f"ws-fail-{self.id}")

    async def _fail(self, error: Exception) -> None:
        if isinstance(error, CloseConnection):  # a close decided outside the handler
            await self.close(error.code, error.reason)
            return
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
        """Send or queue a frame (`Outbox.send`); never blocks."""
        self.outbox.send(frame)

    async def send_paced(self, frame: bytes) -> None:
        """Send one of many frames, at the pace the client reads (`Outbox.send_paced`)."""
        await self.outbox.send_paced(frame)

    def send_newest(self, frame: bytes) -> None:
        """Send a job in place of an unsent older one (`Outbox.send_newest`); never blocks."""
        self.outbox.send_newest(frame)

    def send_error(self, code: str, detail: str) -> None:
        self.outbox.send(error_frame(code, detail))

    def _closed(self, code: Close) -> None:
        """The server closes with `code`; the first code decided is recorded, and counted."""
        if self.close_code is None:
            self.close_code = code
            CLOSES.labels(role=self.role, code=str(int(code))).inc()

    async def close(self, code: Close, reason: str) -> None:
        """Send what is queued (briefly), then the close frame; drop the socket if stuck."""
        await self.outbox.flush(FLUSH_BEFORE_CLOSE_SECONDS)
        self._closed(code)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()[:120]), CLOSE_TIMEOUT_SECONDS
            )
        if not self.ws.closed:
            self.outbox.abort()

    async def receive(self) -> bytes | None:
        """The next data frame from the client, rate-limited; None once it closed.

        A connection over its frame or byte rate is closed 1008 "rate limit".
        One whose address is over the address's byte rate is read later
        instead: nothing is closed for what other connections of the address
        sent, and what is not read waits in the socket, slowing the sender.
        """
        message = await self.ws.receive()
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            # aiohttp answers an oversize frame with 1009, but its close_code may then
            # read 1006 (the closing handshake cut short); the error says what it was.
            if getattr(message.data, "code", None) == Close.MESSAGE_TOO_BIG:
                self._closed(Close.MESSAGE_TOO_BIG)
            return None
        self._frames_in.inc()
        data = message.data
        size = len(data)
        if not (self._bucket.take() and self._bytes.take(size)):
            raise CloseConnection(Close.POLICY_VIOLATION, "rate limit")
        await self._paced(size)
        return data if isinstance(data, bytes) else data.encode()

    async def _paced(self, size: int) -> None:
        """Wait out the address's byte debt; else let the loop turn now and then.

        The first frame (a worker's welcome) is charged but never waits: its
        deadline must not run out in the debt of the address's other
        connections, and a failed welcome would count against the address.
        """
        charge = max(size, FRAME_FLOOR_BYTES)
        wait = self._address.owe(charge) if self._address is not None else 0.0
        first, self._first_frame = self._first_frame, False
        if wait > 0 and not first:
            self._frames_paced.inc()
            self._unyielded = 0
            await asyncio.sleep(wait)
            return
        self._unyielded += size
        if self._unyielded >= YIELD_AFTER_BYTES:
            self._unyielded = 0
            await asyncio.sleep(0)

    async def invalid(self, code: str, detail: str) -> None:
        """Answer an invalid frame; too many of them close the connection."""
        INVALID_FRAMES.labels(role=self.role).inc()
        self._invalid += 1
        self.send_error(code, detail)
        if self._invalid >= self.settings.max_invalid_messages:
            raise CloseConnection(Close.POLICY_VIOLATION, "too many invalid messages")


OPEN_SOCKETS = web.AppKey("open_sockets", set)  # the app's open `Connection`s


async def close_all(app: web.Application) -> None:
    """on_shutdown: tell every client 1001, all at once (each close may wait)."""
    connections: set[Connection] = app[OPEN_SOCKETS]
    await asyncio.gather(
        *(c.close(Close.GOING_AWAY, "server shutting down") for c in list(connections)),
        return_exceptions=True,
    )
