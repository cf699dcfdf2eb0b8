"""The outbox (shared/websocket/outbox.py) through the servers: a client that stops
reading is dropped, others carry on."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from shared.websocket.outbox import text_frame
from tests.support import clients

PADDING = "x" * 100_000  # big jobs fill the socket buffers in a few dozen frames
MOST_JOBS = 200


@contextlib.asynccontextmanager
async def stalled_worker(url: str, hardware_id: str) -> AsyncIterator[socket.socket]:
    """A worker that sends its welcome and then never reads (tiny receive buffer)."""
    loop = asyncio.get_running_loop()
    address = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(10):
            await loop.sock_connect(sock, (address.hostname, address.port))
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET / HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            response = b""
            while b"\r\n\r\n" not in response:
                response += await loop.sock_recv(sock, 1)
            assert response.startswith(b"HTTP/1.1 101"), response
            await loop.sock_sendall(sock, _masked(orjson.dumps(clients.welcome(hardware_id))))
        yield sock
    finally:
        sock.close()


def _masked(payload: bytes) -> bytes:
    """A client text frame: clients must mask (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    header = bytearray(text_frame(payload)[: -len(payload)])
    header[1] |= 0x80
    return bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _close_code(db: asyncpg.Pool, hardware_id: str) -> int | None:
    return await db.fetchval(
        "SELECT close_code FROM worker WHERE hardware_id = $1 AND disconnected_at IS NOT NULL",
        hardware_id,
    )


@pytest.mark.parametrize("mode", ["shared", "per_connection"])
async def test_a_client_that_never_reads_is_dropped_while_others_get_every_job(
    start_servers, db: asyncpg.Pool, mode: str
) -> None:
    stalled_id = f"stalled-{uuid.uuid4().hex[:8]}"
    async with (
        start_servers(
            fanout_mode=mode,
            worker={"send_queue_size": 4},
            node={
                "max_message_bytes": 1 << 20,
                "max_object_bytes": 1 << 20,
                "rate_limit_bytes_per_second": 1 << 30,
                "rate_limit_bytes_burst": 1 << 30,
            },
        ) as stack,
        clients.worker_client(stack.worker_url) as reader,
        stalled_worker(stack.worker_url, stalled_id),
        clients.node_client(stack.node_url) as node,
    ):
        delivered = 0
        code = None
        for _ in range(MOST_JOBS):
            height = clients.next_height()
            await node.send(
                clients.job(height, epoch_challenge={**clients.challenge(height), "pad": PADDING})
            )
            frame = await reader.job_for(height, timeout=30)
            assert frame["epoch_challenge"]["pad"] == PADDING
            delivered += 1
            if (code := await _close_code(db, stalled_id)) is not None:
                break
        assert code == 1008, f"still open after {delivered} jobs"
        # The others keep getting jobs after the slow one is gone.
        height = clients.next_height()
        await node.send(clients.job(height))
        assert (await reader.job_for(height, timeout=30))["task_id"]
