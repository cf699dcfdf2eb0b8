"""A stack the benchmark starts for itself, in one fan-out mode (`--own-stack`).

It is `misc.run_local_stack` with the fan-out mode set through the services'
environment (`NODE_SERVER_FANOUT_MODE`, `WORKER_SERVER_FANOUT_MODE`), on ports
shifted by an offset so it can run beside a `make run` stack. Stopping it is a
SIGTERM, which the runner turns into an orderly stop of every service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.catalogue import SERVICES

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Endpoints:
    """Where the benchmark talks to a stack."""

    node_url: str
    worker_url: str
    # The HTTP of each service (its internal port): metrics, and node_server's API.
    node_http: str
    worker_http: str
    job_worker_http: str
    solution_worker_http: str

    @classmethod
    def local(cls, offset: int = 0) -> Endpoints:
        def ws(name: str) -> str:
            return f"ws://127.0.0.1:{SERVICES[name].port + offset}/"

        def http(name: str) -> str:
            return f"http://127.0.0.1:{SERVICES[name].http_port + offset}"

        services = ("node_server", "worker_server", "process_job_worker", "process_solution_worker")
        return cls(ws(services[0]), ws(services[1]), *map(http, services))


@contextlib.contextmanager
def own_stack(mode: str, offset: int, logs: Path, extra_env: dict[str, str]) -> Iterator[Endpoints]:
    """Run `misc.run_local_stack` in `mode` until the block ends."""
    env = dict(os.environ)
    env.update(extra_env)
    env["NODE_SERVER_FANOUT_MODE"] = mode
    env["WORKER_SERVER_FANOUT_MODE"] = mode
    # The benchmark spreads its sockets over many addresses, but a run of
    # 10,000 still needs room per address and in total.
    env.setdefault("WORKER_SERVER_MAX_CONNECTIONS_PER_IP", "5000")
    env.setdefault("WORKER_SERVER_MAX_CONNECTIONS", "20000")
    # Thousands of sockets per loopback address, their candidates from a few workers:
    # more than any farm behind one address, which these limits are sized for.
    env.setdefault("WORKER_SERVER_ADDRESS_BYTES_PER_SECOND", "1000000000")
    env.setdefault("WORKER_SERVER_ADDRESS_BYTES_BURST", "1000000000")
    env.setdefault("WORKER_SERVER_CANDIDATES_PER_MINUTE", "1000000")
    env.setdefault("WORKER_SERVER_CANDIDATES_PER_MINUTE_PER_ADDRESS", "1000000")
    env.setdefault("NODE_SERVER_LOG_LEVEL", "WARNING")
    env.setdefault("WORKER_SERVER_LOG_LEVEL", "WARNING")
    logs = logs / mode
    logs.mkdir(parents=True, exist_ok=True)
    endpoints = Endpoints.local(offset)
    command = [
        *(sys.executable, "-m", "misc.run_local_stack"),
        *("--port-offset", str(offset), "--logs", str(logs)),
    ]
    print(f"starting a {mode} stack: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    with open(logs / "runner.log", "ab") as output:
        runner = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_ready(runner, offset, logs)
        yield endpoints
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait(10)


def _wait_ready(runner: subprocess.Popen[bytes], offset: int, logs: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    ports = [service.http_port + offset for service in SERVICES.values()]
    while ports:
        if runner.poll() is not None:
            raise RuntimeError(f"the stack exited with {runner.returncode}; see {logs}/")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stack was not ready within {READY_TIMEOUT:g} s; see {logs}/")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/readyz", timeout=1) as r:
                if r.status == 200:
                    ports.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.3)
