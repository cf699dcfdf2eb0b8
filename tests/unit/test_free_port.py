"""`free_port`: test servers bind ports that outgoing connections cannot take first."""

from __future__ import annotations

import socket

from tests.support.ports import PORT_FLOOR, ephemeral_range_start, free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports), "a port was handed out twice"
    low = ephemeral_range_start()
    if low > PORT_FLOOR + 1000:
        assert all(PORT_FLOOR <= port < low for port in ports)
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if something holds it
