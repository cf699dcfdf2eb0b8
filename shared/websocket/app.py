"""The application both websocket servers are: resources, health, shutdown.

Postgres pool, a confirming RabbitMQ publisher and a Kafka fan-out, each a
resource owned by the app's lifecycle; the websocket on the public port and
`/healthz`, `/readyz`, `/metrics` on the internal one (`shared.runtime.listeners`); and
on shutdown every websocket is told 1001 before the resources close. What
one connection goes through is `shared.websocket.steps`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from aiohttp import web

from shared.fanout.modes import MergedFanout, PerConnectionFanout, SharedFanout
from shared.fanout.stream import Fanout, Stream
from shared.rabbit import Publisher
from shared.runtime.health import add_check, add_health_routes
from shared.runtime.instances import heartbeat
from shared.runtime.lifecycle import background, postgres
from shared.runtime.listeners import Handler, add_public_websocket
from shared.websocket.client_address import real_client_address, warn_if_everyone_trusted
from shared.websocket.connection import OPEN_SOCKETS, close_all
from shared.websocket.origin import refuse_foreign_origins
from shared.websocket.settings import WebsocketServerSettings

PUBLISHER = web.AppKey("publisher", Publisher)
FANOUT = web.AppKey("fanout", Fanout)


def create_websocket_app(
    settings: WebsocketServerSettings,
    *,
    exchange: str,
    stream: Stream[Any],
    socket: Handler,
    more_streams: Sequence[Stream[Any]] = (),
    own_hosts: Collection[str] = (),
) -> web.Application:
    """`socket` on the public port; Postgres, a publisher to `exchange`, a fan-out of
    `stream` (and of each of `more_streams`, each with a consumer of its own, merged
    into one), and health checks on the internal one. A POST, PUT or DELETE from a web
    page is served only from `allowed_origins` or a page of `own_hosts`."""
    app = web.Application()
    add_public_websocket(app, settings.internal_port, socket)
    app.middlewares.append(refuse_foreign_origins(settings.allowed_origins, own_hosts))
    if settings.trusted_proxies:  # first: every handler and middleware sees the client
        app.middlewares.insert(0, real_client_address(settings))
        warn_if_everyone_trusted(settings)
    add_health_routes(app, settings.task_failure_limit)
    app[OPEN_SOCKETS] = set()
    publisher = Publisher(settings.rabbitmq_url.get_secret_value(), exchange, settings.client_name)
    app[PUBLISHER] = publisher
    app.cleanup_ctx.append(postgres(settings))
    app.cleanup_ctx.append(heartbeat(settings.module, settings.instance_name))
    app.cleanup_ctx.append(background(f"publisher-{exchange}", lambda _app: publisher.run()))
    fanouts = [_fanout(app, settings, each) for each in (stream, *more_streams)]
    fanout: Fanout[Any] = fanouts[0] if len(fanouts) == 1 else MergedFanout(fanouts)
    app[FANOUT] = fanout
    app.on_shutdown.append(close_all)

    async def publisher_ready() -> bool:
        return publisher.ready

    async def fanout_ready() -> bool:
        return fanout.ready

    add_check(app, "rabbitmq", publisher_ready)
    add_check(app, "kafka", fanout_ready)
    return app


def _fanout(
    app: web.Application, settings: WebsocketServerSettings, stream: Stream[Any]
) -> Fanout[Any]:
    if settings.fanout_mode == "shared":
        shared = SharedFanout(settings, stream, settings.fetch_max_wait_ms)
        app.cleanup_ctx.append(background(f"fanout-{stream.topic}", lambda _app: shared.run()))
        return shared
    own = PerConnectionFanout(settings, stream, settings.fetch_max_wait_ms)
    app.cleanup_ctx.append(_closing(own))
    return own


def _closing(fanout: PerConnectionFanout[Any]) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await fanout.close()

    return context
