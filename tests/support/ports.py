"""Ports for test servers: free now, and not about to be taken by an outgoing connection."""

from __future__ import annotations

import random
import socket
from pathlib import Path

PORT_FLOOR = 20000  # above the usual fixed service ports (RabbitMQ's 15672, …)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, for a server that binds it a moment later.

    Taken below the kernel's ephemeral range when there is room: an outgoing
    connection can then not grab it in between, which a port the kernel
    picked (bind to 0) allows. Never the same port twice in one process.
    """
    low = ephemeral_range_start()
    while True:
        if low > PORT_FLOOR + 1000:
            port = random.randrange(PORT_FLOOR, low)
        else:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
