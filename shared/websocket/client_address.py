"""The client's address behind HTTP proxies: `request.remote` made the real one.

A proxy that ends HTTP (ingress-nginx, an ALB) connects to us itself, so the
peer is the proxy; it names the client in `X-Forwarded-For` or `Forwarded`
(RFC 7239), appending what it saw to what the client may have written. So
the header is believed only from a peer in `trusted_proxies`, and read from
the right: each hop that is itself a trusted proxy passes on its left
neighbour, the first that is not is the client. Anything unreadable on the
way leaves the peer as the client: its address is at least one we saw.

The middleware puts the result in `request.remote` (`request.clone`), the one
place the rest of the code reads a client's address (caps, bans, worker
rows, logs, `from_loopback`). With `proxy_protocol` on, `request.remote` is
already the address the balancer's header named (`shared.runtime.proxied`);
it is then the peer this module starts from.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from shared.runtime.proxied import TrustedProxies, ip_address
from shared.websocket.settings import ForwardedHeader, WebsocketServerSettings

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def client_address(peer: str | None, hops: Sequence[str], trusted: TrustedProxies) -> str | None:
    """The client, given the peer and the hops a header names (left to right)."""
    if not trusted.trusts(peer):
        return peer
    client = peer
    for hop in reversed(hops):
        address = ip_address(_host(hop))
        if address is None:  # "unknown", an obfuscated name, garbage: nothing to go on
            return peer
        client = str(address)
        if not trusted.trusts(address):
            return client
    return client  # every hop is a proxy of ours: the left-most is the client


def _host(hop: str) -> str:
    """The address in one hop: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else ""
    if hop.count(":") == 1:  # IPv4 and a port (IPv6 has several colons)
        return hop.split(":")[0]
    return hop


def x_forwarded_for(request: web.Request) -> list[str]:
    """The hops of every X-Forwarded-For line, in order."""
    return [
        hop for line in request.headers.getall("X-Forwarded-For", ()) for hop in line.split(",")
    ]


def forwarded(request: web.Request) -> list[str]:
    """The `for=` of every Forwarded element, in order ("" for an element without one)."""
    return [element.get("for", "") for element in request.forwarded]


HOPS: dict[ForwardedHeader, Callable[[web.Request], list[str]]] = {
    "x-forwarded-for": x_forwarded_for,
    "forwarded": forwarded,
}


def real_client_address(settings: WebsocketServerSettings) -> Middleware:
    """The middleware that makes `request.remote` the client behind trusted proxies."""
    trusted = TrustedProxies(settings.trusted_proxies)
    hops = HOPS[settings.forwarded_header]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote
        if trusted.trusts(peer):
            client = client_address(peer, hops(request), trusted)
            if client != peer:
                request = request.clone(remote=client)
        return await handler(request)

    return middleware


def warn_if_everyone_trusted(settings: WebsocketServerSettings) -> None:
    """Trusting a network of every address lets any client choose its address."""
    if any(network.prefixlen == 0 for network in settings.trusted_proxies):
        log.warning(
            "every_peer_trusted",
            extra={
                "detail": "trusted_proxies holds 0.0.0.0/0 or ::/0: clients choose their "
                "own address, so per-address caps and bans hold nobody"
            },
        )
