"""Where a service listens, and which port serves what.

A websocket server's public `port` faces the internet and answers its
websocket and nothing else. Health, readiness, metrics, the API and the
dashboard answer on `internal_port`, which only the orchestrator,
Prometheus and operators reach (Centrifugo's `internal_port` is the model).
A request on the wrong port is answered 404, as if the route did not exist
there. The consumers have one port, and nothing public on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from shared.runtime.proxied import ProxyProtocolGate, TrustedProxies
from shared.settings import ServiceSettings
from shared.websocket.settings import WebsocketServerSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_public_websocket(app: web.Application, internal_port: int, socket: Handler) -> None:
    """`socket` at `/` on the public port; every other route on `internal_port` only."""
    public = app.router.add_get("/", socket).resource

    @web.middleware
    async def by_port(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is not None and (resource is public) == (local_port(request) == internal_port):
            return web.json_response(
                {"error": "not_found", "detail": f"{request.path} is not served on this port"},
                status=404,
            )
        return await handler(request)

    app.middlewares.insert(0, by_port)


def local_port(request: web.Request) -> int | None:
    """The port of ours the request arrived on."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if isinstance(sockname, tuple) else None


def tls_context(settings: WebsocketServerSettings) -> ssl.SSLContext | None:
    """The server-side context for wss://, or None to serve plain ws://."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


class ProxyProtocolSite(web.BaseSite):
    """A TCP port whose connections pass `ProxyProtocolGate` before aiohttp reads them."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        trusted: TrustedProxies,
        reuse_port: bool | None,
        backlog: int,
    ) -> None:
        super().__init__(runner)
        self.host, self.port, self.trusted, self.reuse_port = host, port, trusted, reuse_port
        self.backlog = backlog

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port} (PROXY protocol)"

    async def start(self) -> None:
        await super().start()
        handler = self._runner.server
        assert handler is not None
        trusted = self.trusted
        self._server = await asyncio.get_running_loop().create_server(
            lambda: ProxyProtocolGate(handler(), trusted),
            self.host,
            self.port,
            reuse_port=self.reuse_port,
            backlog=self.backlog,
        )


def public_site(
    runner: web.AppRunner, settings: WebsocketServerSettings, reuse_port: bool | None
) -> web.BaseSite:
    """The public port: behind the PROXY protocol gate, with TLS, or plain."""
    if settings.proxy_protocol:
        trusted = TrustedProxies(settings.trusted_proxies)
        return ProxyProtocolSite(
            runner, settings.host, settings.port, trusted, reuse_port, settings.listen_backlog
        )
    return web.TCPSite(
        runner,
        settings.host,
        settings.port,
        ssl_context=tls_context(settings),
        backlog=settings.listen_backlog,
        reuse_port=reuse_port,
    )


def sites(runner: web.AppRunner, settings: ServiceSettings) -> list[web.BaseSite]:
    """The public port (TLS when configured) and, for a websocket server, the internal one.

    With several processes each binds every port with SO_REUSEPORT: the kernel
    hands each new connection to one of them.
    """
    reuse_port = True if settings.processes > 1 else None
    if not isinstance(settings, WebsocketServerSettings):
        return [web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)]
    return [
        public_site(runner, settings, reuse_port),
        # Plain HTTP: probes and scrapers reach it from inside the cluster.
        web.TCPSite(runner, settings.host, settings.internal_port, reuse_port=reuse_port),
    ]


@contextlib.asynccontextmanager
async def listening(app: web.Application, settings: ServiceSettings) -> AsyncIterator[None]:
    """Serve `app` on its ports until the block ends, then shut it down gracefully."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        # Also the deadline for a request still arriving: no slow trickle holds a socket.
        keepalive_timeout=settings.http_idle_timeout_seconds,
    )
    await runner.setup()
    try:
        for site in sites(runner, settings):
            await site.start()
        yield
    finally:
        await runner.cleanup()
