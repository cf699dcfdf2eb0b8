"""`make run`'s stack as a newcomer gets it, checked by `misc/local_e2e_test.py`."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from shared.catalogue import SERVICES
from tests.support import clients
from tests.support.poll import until
from tests.support.stack import (
    POSTGRES_SERVER,
    RABBITMQ_SERVER,
    RUN_ID,
    drop_database,
    private_vhost,
)


def free_offset() -> int:
    """Ports 18001 to 19922: below `free_port`'s range and the kernel's ephemeral range."""
    for _ in range(50):
        offset = random.randrange(10000, 11900)
        ports = [
            port + offset
            for service in SERVICES.values()
            for port in (service.port, service.internal_port)
            if port
        ]
        if all(_is_free(port) for port in ports):
            return offset
    raise RuntimeError("no free port range")


REALISTIC_HEIGHT = 5_000_000


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def test_run_local_stack_serves_the_e2e_round_trip(tmp_path: Path) -> None:
    database = f"wspool_stack_{RUN_ID}"
    with private_vhost(database) as vhost:
        await check_stack(tmp_path, database, f"{RABBITMQ_SERVER}/{vhost}")


async def check_stack(tmp_path: Path, database: str, rabbitmq_url: str) -> None:
    """Its own database, vhost and Tansu: nothing shared with the in-process services."""
    stack, offset, env = _local_stack(tmp_path, database, rabbitmq_url)
    try:
        text = _until_running(stack)
        assert f"ws://127.0.0.1:{8001 + offset}/" in text
        assert f"ws://127.0.0.1:{8002 + offset}/" in text
        assert f"http://127.0.0.1:{8021 + offset}/dashboard" in text
        e2e_env = {
            **env,
            "E2E_NODE_URL": f"ws://127.0.0.1:{8001 + offset}/",
            "E2E_WORKER_URL": f"ws://127.0.0.1:{8002 + offset}/",
            "E2E_NODE_API": f"http://127.0.0.1:{8021 + offset}",
        }
        for _ in range(2):  # safe to repeat against the same database
            e2e = _run_module("misc.local_e2e_test", e2e_env)
            assert e2e.returncode == 0, e2e.stderr
            assert e2e.stdout.startswith("e2e passed")
        # The end-to-end check retired what it sent: a real chain's job still gets through.
        async with (
            clients.worker_client(e2e_env["E2E_WORKER_URL"]) as worker,
            clients.node_client(e2e_env["E2E_NODE_URL"]) as node,
        ):
            await clients.job_sent(node, worker, REALISTIC_HEIGHT, timeout=15)
        stack.send_signal(signal.SIGINT)
        assert stack.wait(30) == 0
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        await drop_database(database)
    for service in (
        "node_server",
        "worker_server",
        "process_job_worker",
        "process_solution_worker",
    ):
        log = (tmp_path / f"{service}.log").read_text()
        assert "Traceback" not in log, f"{service} logged a traceback"


def test_e2e_fails_clearly_when_nothing_listens() -> None:
    env = {**os.environ, "E2E_NODE_URL": "ws://127.0.0.1:1/", "E2E_WORKER_URL": "ws://127.0.0.1:1/"}
    result = _run_module("misc.local_e2e_test", env)
    assert result.returncode == 1
    assert result.stderr.startswith("e2e FAILED: cannot connect")


def test_run_local_stack_says_how_to_start_missing_dependencies() -> None:
    env = {**os.environ, "WSPOOL_POSTGRES_DSN": "postgresql://postgres@127.0.0.1:1/wspool"}
    result = _run_module("misc.run_local_stack", env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: Postgres at postgresql://postgres@127.0.0.1:1/wspool")
    assert "docker compose --profile environment up -d" in result.stderr
    assert "Traceback" not in result.stderr


async def test_killing_the_runner_leaves_nothing_running(tmp_path: Path) -> None:
    """Tansu runs in its own session: only the parent-death tie stops it after a kill -9."""
    database = f"wspool_orphans_{RUN_ID}"
    with private_vhost(database) as vhost:
        runner, _, _ = _local_stack(tmp_path, database, f"{RABBITMQ_SERVER}/{vhost}")
        children: dict[int, str] = {}
        try:
            _until_running(runner)
            children = _children(runner.pid)
            # The control: the broker and the four services are there, and alive.
            names = sorted(children.values())
            assert sum("tansu" in name for name in names) == 1, names
            assert len(children) == 5, names
            runner.send_signal(signal.SIGKILL)
            runner.wait()
            alive = await until(  # the services stop gracefully
                lambda: [pid for pid in children if _alive(pid)],
                lambda alive: not alive,
                timeout=20,
            )
            assert not alive, f"still running after the runner was killed: {alive}"
        finally:
            for pid in children:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            await drop_database(database)


def _local_stack(
    tmp_path: Path, database: str, rabbitmq_url: str
) -> tuple[subprocess.Popen[str], int, dict[str, str]]:
    """`misc.run_local_stack` on a free port range with its own database and vhost:
    the runner, its port offset and its environment."""
    offset = free_offset()
    env = {
        **os.environ,
        "WSPOOL_POSTGRES_DSN": f"{POSTGRES_SERVER}/{database}",
        "WSPOOL_RABBITMQ_URL": rabbitmq_url,
    }
    command = ["misc.run_local_stack", "--port-offset", str(offset), "--logs", str(tmp_path)]
    runner = subprocess.Popen(
        [sys.executable, "-m", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return runner, offset, env


def _until_running(runner: subprocess.Popen[str], timeout: float = 90.0) -> str:
    """What the runner printed up to its "Press Ctrl-C" line."""
    assert runner.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = runner.stdout.readline()
        assert line, "stack exited early:\n" + "".join(output)
        output.append(line)
        if line.startswith("Press Ctrl-C"):
            return "".join(output)
    raise AssertionError("stack not running in time:\n" + "".join(output))


def _run_module(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m module` to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60
    )


def _children(parent: int) -> dict[int, str]:
    """The processes whose parent is `parent`, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found[int(entry.name)] = command
    return found


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
