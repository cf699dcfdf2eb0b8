"""A fleet reconnecting at once: the kernel queues its handshakes, and a client gone
before its upgrade is answered is counted, not an error with a traceback."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

from shared.metrics import REFUSED_CONNECTIONS
from tests.support import clients
from tests.support.poll import until
from tests.support.stack import StartServers

SOMAXCONN = Path("/proc/sys/net/core/somaxconn")  # the kernel's cap on any backlog
GONE = REFUSED_CONNECTIONS.labels(role="worker", reason="gone")


async def _upgrade_then_reset(url: str) -> None:
    """Send a websocket upgrade and reset the connection at once (SO_LINGER 0)."""
    address = urlparse(url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(request.encode())
    await writer.drain()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_a_client_gone_before_the_upgrade_is_counted_quietly(
    start_servers: StartServers, caplog: pytest.LogCaptureFixture
) -> None:
    before = GONE._value.get()
    with caplog.at_level(logging.ERROR):
        async with start_servers() as stack:
            for _ in range(20):
                await _upgrade_then_reset(stack.worker_url)
            gone = await until(lambda: GONE._value.get() - before)
            async with clients.worker_and_node(stack) as (worker, node):  # still served
                assert await clients.job_sent(node, worker, clients.next_height())
    assert gone > 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def _somaxconn() -> int:
    return int(SOMAXCONN.read_text())


def _listen_backlog(address: str) -> int:
    """The accept queue bound of a listening socket: `ss` shows it as Send-Q."""
    port = address.rsplit(":", 1)[1]
    shown = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(shown[2])  # State Recv-Q Send-Q Local Peer


async def test_the_public_port_queues_a_storm_of_handshakes(start_servers: StartServers) -> None:
    somaxconn = _somaxconn()
    async with start_servers(worker={"listen_backlog": 1000}) as stack:
        assert _listen_backlog(stack.worker_address) == 1000
        assert _listen_backlog(stack.node_address) == min(4096, somaxconn)  # the default
