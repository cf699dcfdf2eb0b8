"""One client websocket, whichever role: the steps every role shares, in order.

a web page's Origin not allowed (else 403) → auth (else 401) → the role's
admission (a refusal is answered before the upgrade) → `Connection`, counted
→ registered for shutdown → the role's `opened` → `<role>_connected` →
subscribed to the fan-out → each frame parsed into the model its `type` names
and handed to that model's handler → finally unsubscribed, the role's
`closed`, `<role>_disconnected`.

A role (node, worker) supplies only what is its own: a `Session` per
connection and a `FrameTable`. Failures are answered by `Connection.open`
through the error catalogue (`shared.errors`), never at the call site.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel

from shared.codec import Frames
from shared.errors import EVENT_STREAM_DOWN, EventStreamUnavailable, ProtocolError
from shared.fanout.stream import Fanout
from shared.metrics import ACCEPTED_CONNECTIONS, OPEN_CONNECTIONS, REFUSED_CONNECTIONS
from shared.websocket.access import authorized, unauthorized
from shared.websocket.app import FANOUT
from shared.websocket.connection import OPEN_SOCKETS, Connection
from shared.websocket.origin import forbidden, origin_refused
from shared.websocket.settings import WebsocketServerSettings


class Session(Protocol):
    """One connection as its role sees it; also the fan-out's subscriber."""

    def offer(self, update: Any) -> None:
        """A fan-out update; forward it or not. Must not block."""

    async def opened(self) -> Mapping[str, object]:
        """Before the fan-out starts: the role's opening steps.

        Returns the fields its connected and disconnected log lines carry; a
        connection that fails here is logged as neither.
        """

    async def closed(self) -> None:
        """After the fan-out stopped, for connections that `opened`."""


S = TypeVar("S", bound=Session)
Handler = Callable[[S, Any], Awaitable[None]]


class FrameTable(Generic[S]):
    """A role's messages, each with its handler, dispatched on the frame's `type`.

    Frames without a `type` are the `default` message (see `Frames`); a
    frame that doesn't parse is an invalid frame (error frame, counted).
    """

    def __init__(self, handlers: Mapping[type[BaseModel], Handler[S]], default: type[BaseModel]):
        self.handlers = dict(handlers)
        self.frames = Frames(self.handlers, default)

    async def dispatch(self, session: S, frame: bytes) -> None:
        message = self.frames.parse(frame)
        await self.handlers[type(message)](session, message)


Admit = Callable[[web.Request], contextlib.AbstractContextManager[web.StreamResponse | None]]


@contextlib.contextmanager
def everyone(_request: web.Request) -> Iterator[None]:
    """The admission of a role that refuses no one past authentication."""
    yield None


@dataclass(frozen=True, slots=True)
class Role(Generic[S]):
    """What one kind of client's websocket is made of."""

    name: str  # `role` label of metrics and log lines
    settings: web.AppKey[Any]  # the app's `WebsocketServerSettings`
    frames: FrameTable[S]
    session: Callable[[web.Request, Connection], S]
    log: logging.Logger  # the role's own: its connected/disconnected lines
    # Yields a refusal to answer instead of upgrading, or None while the
    # connection is held (counted against the role's limits).
    admit: Admit = everyone


def socket_handler(role: Role[Any]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler that serves `role`'s websocket."""
    return functools.partial(serve, role)


async def serve(role: Role[S], request: web.Request) -> web.StreamResponse:
    settings: WebsocketServerSettings = request.app[role.settings]
    refusal = origin_refused(request, settings.allowed_origins)
    if refusal is not None:  # a web page: only those an operator allowed
        REFUSED_CONNECTIONS.labels(role=role.name, reason="origin").inc()
        return forbidden("forbidden_origin", refusal)
    if not authorized(request, settings.auth_tokens):
        REFUSED_CONNECTIONS.labels(role=role.name, reason="unauthorized").inc()
        return unauthorized()
    with role.admit(request) as refusal:
        if refusal is not None:
            return refusal
        return await _serve_connection(role, request, settings)


async def _serve_connection(
    role: Role[S], request: web.Request, settings: WebsocketServerSettings
) -> web.StreamResponse:
    connection = Connection(request, settings, role.name)
    session = role.session(request, connection)
    ACCEPTED_CONNECTIONS.labels(role=role.name).inc()
    OPEN_CONNECTIONS.labels(role=role.name).inc()
    opened: Mapping[str, object] | None = None
    try:
        async with connection.open():
            with _registered(request.app, connection):
                opened = await session.opened()
                role.log.info(f"{role.name}_connected", extra={**connection.log_context, **opened})
                async with _subscribed(request.app[FANOUT], session, connection):
                    while (frame := await connection.receive()) is not None:
                        try:
                            await role.frames.dispatch(session, frame)
                        except ProtocolError as error:
                            await connection.invalid(error.code, error.detail)
    except ConnectionResetError:
        if connection.ws.prepared:
            raise
        # The client left before its upgrade was answered (a blip, a client's own
        # timeout in a storm): nobody to answer, nothing to log a traceback for.
        REFUSED_CONNECTIONS.labels(role=role.name, reason="gone").inc()
        return web.Response(status=400)
    finally:
        OPEN_CONNECTIONS.labels(role=role.name).dec()
        if opened is not None:
            await session.closed()
            role.log.info(
                f"{role.name}_disconnected",
                extra={**connection.log_context, **opened, "code": connection.close_code},
            )
    return connection.ws


@contextlib.contextmanager
def _registered(app: web.Application, connection: Connection) -> Iterator[None]:
    """Keep the connection in the app's registry (for shutdown) while it is open."""
    app[OPEN_SOCKETS].add(connection)
    try:
        yield
    finally:
        app[OPEN_SOCKETS].discard(connection)


@dataclass(eq=False, slots=True)
class _Subscription:
    """A session as the fan-out sees it: an `offer` that raises fails its connection only."""

    session: Session
    connection: Connection

    def offer(self, update: Any) -> None:
        self.session.offer(update)

    def failed(self, error: Exception) -> None:
        self.connection.fail_soon(error)


@contextlib.asynccontextmanager
async def _subscribed(
    fanout: Fanout[Any], session: Session, connection: Connection
) -> AsyncIterator[None]:
    """Receive the fan-out while the body runs."""
    subscription = _Subscription(session, connection)
    try:
        await fanout.subscribe(subscription)
    except EVENT_STREAM_DOWN as error:
        raise EventStreamUnavailable(f"{type(error).__name__}: {error}") from error
    try:
        yield
    finally:
        await fanout.unsubscribe(subscription)
