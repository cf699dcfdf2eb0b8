"""A websocket client by hand, with tiny socket buffers, that reads only when the test does.

aiohttp's client reads ahead into memory; this one lets the server's side
fill up, as a slow client's would.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import orjson

TEXT, CLOSE = 0x1, 0x8


async def connect(
    address: str, receive_buffer: int = 4096, limit: int = 1024
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Upgrade a connection to `address` (host:port); its reader and writer."""
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    # Before connecting: set later, the buffer the kernel already sized sticks.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    return reader, writer


async def send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    """One masked text frame, as clients send."""
    payload, mask = orjson.dumps(message), os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 65536:
        header = bytes([0x81, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big")
    writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    await writer.drain()


async def receive(reader: asyncio.StreamReader, timeout: float = 10.0) -> dict[str, Any]:
    """The next text frame as JSON (server frames are unmasked); pings are skipped.

    Raises ConnectionError when the server closes or drops the connection.
    """
    async with asyncio.timeout(timeout):
        while True:
            try:
                first, second = await reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                elif size == 127:
                    size = int.from_bytes(await reader.readexactly(8), "big")
                payload = await reader.readexactly(size)
            except asyncio.IncompleteReadError:
                raise ConnectionError("dropped by the server") from None
            opcode = first & 0x0F
            if opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {payload[:2].hex()} {payload[2:]!r}")
            if opcode == TEXT:
                return orjson.loads(payload)
