"""The client's real address behind proxies, through real sockets.

The tests play the proxy themselves, from 127.0.0.1 (trusted) or 127.0.0.2
(not): a relay that writes a PROXY protocol header, or a client that sends
X-Forwarded-For itself. What the server believed is read where the rest of
the code reads it: the worker row's `remote_ip`, the per-address cap, the
admin API's loopback check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from tests.support import clients
from tests.support.http import call
from tests.support.poll import until
from tests.support.proxy import relay, v1_header, v2_header
from tests.support.stack import Stack

TRUSTED = "127.0.0.1"  # the proxy
UNTRUSTED = "127.0.0.2"


@pytest.fixture(scope="module")
async def proxied(start_servers) -> AsyncIterator[Stack]:
    """worker_server's public port behind the PROXY protocol, 127.0.0.1 its balancer."""
    async with start_servers(worker={"proxy_protocol": True, "trusted_proxies": TRUSTED}) as stack:
        yield stack


@pytest.fixture(scope="module")
async def forwarding(start_servers) -> AsyncIterator[Stack]:
    """Both servers trusting X-Forwarded-For from 127.0.0.1; one worker per address."""
    async with start_servers(
        trusted_proxies=TRUSTED, worker={"max_connections_per_ip": 1}
    ) as stack:
        yield stack


async def remote_ip(db: asyncpg.Pool, hardware_id: str) -> str:
    query = "SELECT remote_ip FROM worker WHERE hardware_id = $1"
    return await until(lambda: db.fetchval(query, hardware_id))


async def welcomed_through(url: str, db: asyncpg.Pool, **kwargs) -> str:
    """A worker welcomed at `url`: the address its row records."""
    hello = clients.welcome()
    async with clients.worker_client(url, hello, **kwargs):
        return await remote_ip(db, hello["hardware_id"])


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (v1_header("198.51.100.7"), "198.51.100.7"),
        (v1_header("2001:db8::7"), "2001:db8::7"),
        (v2_header("198.51.100.8"), "198.51.100.8"),
        (v2_header("2001:db8::8"), "2001:db8::8"),
    ],
)
async def test_proxy_protocol_header_names_the_worker(
    proxied: Stack, db: asyncpg.Pool, header: bytes, client: str
) -> None:
    async with relay(proxied.worker_address, header) as url:
        assert await welcomed_through(url, db) == client


def handshake(stack: Stack) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: {stack.worker_address}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def answer(stack: Stack, source: str, *chunks: bytes) -> tuple[bytes, bytes]:
    """The status line the public port answers `chunks` with, and the rest until it closes
    (b"" while it stays open, as an upgraded websocket does)."""
    host, port = stack.worker_address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        if status.startswith(b"HTTP/1.1 101"):
            return status, b""
        return status, await asyncio.wait_for(reader.read(), 5)  # to EOF: it closed
    finally:
        writer.close()


async def test_proxy_protocol_is_taken_from_trusted_peers_only(proxied: Stack) -> None:
    header = v1_header("198.51.100.9")
    status, _ = await answer(proxied, TRUSTED, header + handshake(proxied))
    assert status.startswith(b"HTTP/1.1 101")  # the positive control
    status, rest = await answer(proxied, UNTRUSTED, header + handshake(proxied))
    assert status.startswith(b"HTTP/1.1 403")
    assert b'"error":"forbidden"' in rest


async def test_header_in_pieces_is_awaited(proxied: Stack) -> None:
    header = v2_header("198.51.100.10")
    pieces = [header[:5], header[5:14], header[14:], handshake(proxied)]
    status, _ = await answer(proxied, TRUSTED, *pieces)
    assert status.startswith(b"HTTP/1.1 101")


@pytest.mark.parametrize(
    "first",
    [
        b"",  # a client that came straight to the port, not through the balancer
        b"PROXY TCP4 198.51.100.7 127.0.0.1 99999 8002\r\n",
        b"PROXY TCP4 " + b"1" * 200,  # no end within the v1 bound
        v2_header("198.51.100.7")[:12] + b"\x11" + v2_header("198.51.100.7")[13:],  # version 1
    ],
)
async def test_malformed_or_missing_header_is_refused_with_400(
    proxied: Stack, first: bytes
) -> None:
    status, rest = await answer(proxied, TRUSTED, first + handshake(proxied))
    assert status.startswith(b"HTTP/1.1 400")
    assert b'"error":"invalid_proxy_header"' in rest


async def test_internal_port_is_not_behind_the_proxy_protocol(proxied: Stack) -> None:
    status, body = await call("GET", f"{proxied.worker_http}/healthz")
    assert status == 200, body


async def test_forwarded_for_is_believed_from_a_trusted_proxy_only(
    forwarding: Stack, db: asyncpg.Pool
) -> None:
    # What the client wrote comes first; the proxy appended the address it saw.
    headers = {"X-Forwarded-For": "192.0.2.66, 198.51.100.20"}
    trusted = await welcomed_through(forwarding.worker_url, db, headers=headers)
    assert trusted == "198.51.100.20"
    untrusted = await welcomed_through(forwarding.worker_url, db, headers=headers, source=UNTRUSTED)
    assert untrusted == UNTRUSTED


async def test_per_address_cap_counts_the_forwarded_address(forwarding: Stack) -> None:
    def behind_proxy(client: str) -> contextlib.AbstractAsyncContextManager:
        return clients.connect(forwarding.worker_url, headers={"X-Forwarded-For": client})

    # One per address block (/24): two clients behind the one proxy are two blocks...
    async with behind_proxy("198.51.100.30"), behind_proxy("203.0.113.31"):
        # ... and a second connection from one of them is over its cap.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with behind_proxy("198.51.100.99"):
                pass
    assert refused.value.status == 503


async def test_admin_api_from_loopback_means_the_client_not_the_proxy(forwarding: Stack) -> None:
    # No admin_token: the admin API answers loopback only. A proxy on this machine
    # forwarding someone else must not make that someone loopback.
    stats = f"{forwarding.node_http}/api/stats"
    status, _ = await call("GET", stats)
    assert status == 200  # the positive control: the proxy's own request
    status, body = await call("GET", stats, headers={"X-Forwarded-For": "198.51.100.40"})
    assert (status, body["error"]) == (403, "forbidden")
