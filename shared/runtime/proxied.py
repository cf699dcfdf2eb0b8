"""Whom we believe about a client's address, and the PROXY protocol gate of a public port.

`TrustedProxies` holds the `trusted_proxies` setting: only a peer in it may
tell us who the client is, by a PROXY protocol header (here) or a forwarded
header (`shared.websocket.client_address`). `ProxyProtocolGate` stands
between a public socket and aiohttp's `RequestHandler`: it refuses peers that
are not trusted, reads the header, and then hands the connection on through a
`PeerTransport` that reports the client as its peer, so `request.remote` is
the client's address without aiohttp knowing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any, cast

import orjson

from shared.metrics import PROXY_PROTOCOL_REFUSED
from shared.runtime.proxy_protocol import ProxyHeaderError, parse_proxy_header

log = logging.getLogger(__name__)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip_address(text: str | None) -> Address | None:
    """`text` as an address (an IPv4-mapped IPv6 one as IPv4), None if it is not one."""
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The networks whose hosts may say who the client is (`trusted_proxies`)."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: Address | str | None) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            address = ip_address(address)
        return address is not None and any(address in network for network in self.networks)


def peer_host(peername: Any) -> str | None:
    """The host of a transport's `peername` (a tuple for TCP; a path or None otherwise)."""
    return str(peername[0]) if isinstance(peername, tuple | list) and peername else None


class PeerTransport(asyncio.Transport):
    """The socket's transport, reporting `peername` as the client the header named."""

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self.inner = inner
        self.peername: tuple[str, int] | None = None  # None: the socket's own peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername" and self.peername is not None:
            return self.peername
        return self.inner.get_extra_info(name, default)

    # Everything else is the socket's.
    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.inner.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.inner.writelines(list_of_data)

    def write_eof(self) -> None:
        self.inner.write_eof()

    def can_write_eof(self) -> bool:
        return self.inner.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self.inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.inner.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self.inner.pause_reading()

    def resume_reading(self) -> None:
        self.inner.resume_reading()

    def is_reading(self) -> bool:
        return self.inner.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()


class ProxyProtocolGate(asyncio.Protocol):
    """A public connection with `proxy_protocol` on: a trusted peer, then its header,
    then aiohttp's handler (`handler`) sees the rest with the client as the peer."""

    def __init__(self, handler: asyncio.Protocol, trusted: TrustedProxies) -> None:
        self._handler = handler
        self._trusted = trusted
        self._transport: PeerTransport | None = None  # set once the peer is trusted
        self._pending: bytes | None = b""  # what arrived of the header; None once read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance: uvloop's transports are not asyncio's classes, only like them.
        transport = cast(asyncio.Transport, transport)
        peer = peer_host(transport.get_extra_info("peername"))
        if not self._trusted.trusts(peer):
            _refuse(transport, peer, "untrusted_peer", 403, "forbidden", _UNTRUSTED)
            return
        self._transport = PeerTransport(transport)
        # At once: aiohttp's keep-alive deadline then also bounds a header that never comes.
        self._handler.connection_made(self._transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return  # refused; the close is under way
        if self._pending is None:
            self._handler.data_received(data)
            return
        self._pending += data
        try:
            header = parse_proxy_header(self._pending)
        except ProxyHeaderError as error:
            peer = peer_host(self._transport.inner.get_extra_info("peername"))
            _refuse(
                self._transport.inner,
                peer,
                "invalid_header",
                400,
                "invalid_proxy_header",
                str(error),
            )
            return
        if header is None:
            return
        rest, self._pending = self._pending[header.length :], None
        self._transport.peername = header.source
        if rest:
            self._handler.data_received(rest)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received() if self._transport is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._handler.resume_writing()


_UNTRUSTED = "this port takes connections from the load balancer (trusted_proxies) only"


def _refuse(
    transport: asyncio.Transport, peer: str | None, reason: str, status: int, code: str, detail: str
) -> None:
    """Answer in HTTP, which is what a client that came straight here speaks, and close."""
    PROXY_PROTOCOL_REFUSED.labels(reason=reason).inc()
    log.info("proxy_protocol_refused", extra={"peer": peer, "reason": reason, "detail": detail})
    body = orjson.dumps({"error": code, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {'Forbidden' if status == 403 else 'Bad Request'}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    transport.write(head.encode() + body)
    transport.close()
