"""A load balancer in miniature: it relays TCP to a server, a PROXY protocol header first."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
from collections.abc import AsyncIterator

from shared.runtime.proxy_protocol import V2_SIGNATURE
from tests.support.ports import free_port


def v1_header(client: str, port: int = 40000) -> bytes:
    family = "TCP4" if ipaddress.ip_address(client).version == 4 else "TCP6"
    ours = "127.0.0.1" if family == "TCP4" else "::1"
    return f"PROXY {family} {client} {ours} {port} 8002\r\n".encode()


def v2_header(client: str, port: int = 40000) -> bytes:
    address = ipaddress.ip_address(client)
    family, ours = (0x11, "127.0.0.1") if address.version == 4 else (0x21, "::1")
    body = address.packed + ipaddress.ip_address(ours).packed + struct.pack("!HH", port, 8002)
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def relay(target: str, header: bytes, source: str = "127.0.0.1") -> AsyncIterator[str]:
    """Relay connections to `target` (host:port) from `source`, each starting with `header`;
    yields the relay's ws:// URL. Open relays end with the block."""
    host, port = target.rsplit(":", 1)
    relays: set[asyncio.Task[None]] = set()
    sockets: set[asyncio.StreamWriter] = set()

    async def accepted(client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        sockets.add(client_out)
        try:
            server_in, server_out = await asyncio.open_connection(
                host, int(port), local_addr=(source, 0)
            )
            sockets.add(server_out)
            server_out.write(header)
            async with asyncio.TaskGroup() as both_ways:
                both_ways.create_task(_copy(client_in, server_out))
                both_ways.create_task(_copy(server_in, client_out))
        finally:
            client_out.close()

    listen = free_port()
    server = await asyncio.start_server(accepted, "127.0.0.1", listen)
    try:
        yield f"ws://127.0.0.1:{listen}/"
    finally:
        server.close()
        for socket in sockets:  # both copies of each relay then read their end
            socket.close()
        await asyncio.gather(*relays, return_exceptions=True)
        await server.wait_closed()
