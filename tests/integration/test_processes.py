"""worker_server run as two processes on one port: spread, summed, restarted, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from shared.catalogue import SERVICES
from shared.runtime.supervisor import MULTIPROC_DIR, STOP_MARGIN_SECONDS, SUPERVISOR_PID, usage
from tests.support import clients
from tests.support.instances import Service
from tests.support.metrics import Sample, scrape
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.stack import Backends

SHUTDOWN_TIMEOUT_SECONDS = 5.0
CONNECTIONS = 40
OPEN_WORKERS: Sample = ("wspool_open_connections", (("role", "worker"),))
INSTANCES = "SELECT name, stats FROM instance WHERE role = 'worker_server' AND name LIKE $1 || '/%'"


def children(parent: int) -> set[int]:
    """Pids whose parent is `parent`, from /proc."""
    found = set()
    for pid in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if usage(pid.name).parent == parent:
                found.add(int(pid.name))
    return found


def spawned_by(supervisor: int) -> set[int]:
    """Its children even once orphaned: the processes it gave its pid in the environment."""
    marker = f"{SUPERVISOR_PID}={supervisor}".encode()
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker in environ.read_bytes().split(b"\0"):
                found.add(int(environ.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent has not reaped it yet


@contextlib.asynccontextmanager
async def two_processes(
    backends: Backends,
    root: Path,
    instance: str,
    port: int | None = None,
    name: str = "worker_server",
) -> AsyncIterator[Service]:
    """A service with PROCESSES=2 as a subprocess; it and its children end with the block."""
    prefix = SERVICES[name].env_prefix
    port = port or free_port()
    internal_port = free_port() if SERVICES[name].internal_port else None
    settings = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PROCESSES": "2",
        "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
        **({"INTERNAL_PORT": str(internal_port)} if internal_port else {}),
        **({"SERVER_INSTANCE": instance} if name == "worker_server" else {}),
    }
    env = {**os.environ, **backends.env(prefix), **{prefix + k: v for k, v in settings.items()}}
    service = Service(name, env, port, root / f"{name}.log", internal_port)
    service.start()
    assert service.process is not None
    try:
        yield service
    finally:
        left = spawned_by(service.process.pid)
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await service.exited(timeout=SHUTDOWN_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS)
        service.kill()
        for pid in left:  # they end with their parent; this is for a test that broke that
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(service.log_text()[-3000:])


@contextlib.asynccontextmanager
async def ready_pair(
    backends: Backends, root: Path, instance: str, name: str = "worker_server"
) -> AsyncIterator[tuple[Service, set[int]]]:
    """`two_processes`, once it is ready and both children run: the service, their pids."""
    async with two_processes(backends, root, instance, name=name) as service:
        await service.ready()
        yield service, await two_children(service)


async def two_children(service: Service) -> set[int]:
    assert service.process is not None
    pid = service.process.pid
    return await until(lambda: _both(children(pid)), timeout=30.0)


async def _both(pids: set[int]) -> set[int] | None:
    return pids if len(pids) == 2 else None


def environment(pid: int) -> dict[str, str]:
    variables = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(line.split("=", 1) for line in variables if "=" in line)


def is_dir(path: str) -> bool:
    return Path(path).is_dir()


def rss(pid: int) -> int:
    return usage(pid).resident_bytes


@pytest.fixture
def instance() -> str:
    return f"procs-{uuid.uuid4().hex[:8]}"


async def test_connections_spread_over_both_processes_and_metrics_sum_them(
    backends: Backends, db: asyncpg.Pool, tmp_path: Path, instance: str
) -> None:
    async with ready_pair(backends, tmp_path, instance) as (service, pids):
        async with contextlib.AsyncExitStack() as connections:
            for number in range(CONNECTIONS):
                await connections.enter_async_context(
                    clients.worker_client(
                        service.ws, clients.welcome(f"procs-{number}-{uuid.uuid4().hex[:6]}")
                    )
                )

            async def summed() -> dict[Sample, float] | None:
                samples = await scrape(service.http)
                open_ = samples.get(OPEN_WORKERS)
                return samples if open_ == CONNECTIONS else None

            samples = await until(summed, timeout=20.0)

            async def shares() -> list[int] | None:
                rows = await db.fetch(INSTANCES, instance)
                counts = sorted(orjson.loads(row["stats"]).get("connections", 0) for row in rows)
                return counts if sum(counts) == CONNECTIONS else None

            rows = await db.fetch(INSTANCES, instance)
            assert sorted(row["name"] for row in rows) == [f"{instance}/0", f"{instance}/1"]
            counts = await until(shares, timeout=20.0)
            print(f"connections per process: {counts}")
            assert len(counts) == 2 and min(counts) > 0, "the kernel gave one process them all"
        log = service.log_text()
        assert '"process":0' in log and '"process":1' in log, "lines name their process"
        # The process metrics add up the children: more memory than either alone.
        memory = samples[("process_resident_memory_bytes", ())]
        by_child = [rss(pid) for pid in pids]
        assert 0.7 * sum(by_child) < memory < 1.3 * sum(by_child), (memory, by_child)
        assert samples[("process_cpu_seconds_total", ())] > 0


async def test_a_killed_child_is_restarted_and_the_service_keeps_serving(
    backends: Backends, db: asyncpg.Pool, tmp_path: Path, instance: str
) -> None:
    async with ready_pair(backends, tmp_path, instance) as (service, before):
        # The control: nothing replaces a child that was left alone.
        await asyncio.sleep(1.0)
        assert await two_children(service) == before
        victim, survivor = sorted(before)
        os.kill(victim, signal.SIGKILL)
        after = await until(
            lambda: _both(children(service.process.pid) - {victim}),  # type: ignore[union-attr]
            timeout=30.0,
        )
        assert survivor in after and victim not in after
        exited = [line for line in service.log_text().splitlines() if '"child_exited"' in line]
        assert len(exited) == 1 and f'"pid":{victim},' in exited[0], exited
        assert '"exit_code":-9' in exited[0]
        await service.ready()
        async with clients.worker_client(
            service.ws, clients.welcome(f"procs-after-{uuid.uuid4().hex[:6]}")
        ):

            async def counted() -> bool:
                return (await scrape(service.http)).get(OPEN_WORKERS) == 1

            await until(counted, timeout=20.0)


async def test_sigterm_stops_every_child_and_the_parent_exits_0(
    backends: Backends, tmp_path: Path, instance: str
) -> None:
    async with ready_pair(backends, tmp_path, instance) as (service, pids):
        metrics_dir = environment(min(pids))[MULTIPROC_DIR]
        assert is_dir(metrics_dir)
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        code = await service.exited(timeout=SHUTDOWN_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS + 5)
        print(f"exited {code} after {time.monotonic() - started:.2f} s")
        assert code == 0
        assert not [pid for pid in pids if alive(pid)], "a child outlived its supervisor"
        assert not is_dir(metrics_dir), "the supervisor left its metrics directory behind"


async def test_a_port_taken_at_start_ends_the_service_with_1(
    backends: Backends, tmp_path: Path, instance: str
) -> None:
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with two_processes(backends, tmp_path, instance, port=port) as service:
            assert await service.exited(timeout=60.0) == 1
            assert '"cannot_listen"' in service.log_text()
            assert '"cannot_run"' in service.log_text()


async def test_children_end_when_their_supervisor_is_killed(
    backends: Backends, tmp_path: Path, instance: str
) -> None:
    async with ready_pair(backends, tmp_path, instance) as (service, pids):
        service.kill()  # SIGKILL: the supervisor has no chance to stop them itself

        async def gone() -> bool:
            return not any(alive(pid) for pid in pids)

        await until(gone, timeout=SHUTDOWN_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS)


async def test_a_consumer_runs_as_two_processes_on_its_one_port(
    backends: Backends, db: asyncpg.Pool, tmp_path: Path, instance: str
) -> None:
    async with ready_pair(backends, tmp_path, instance, name="process_job_worker") as (
        service,
        pids,
    ):

        async def rows() -> list[str] | None:
            names = await db.fetch(
                "SELECT name FROM instance WHERE role = 'process_job_worker' "
                "AND name LIKE '%:' || $1 || '/%' AND stopped_at IS NULL",
                str(service.port),
            )
            found = sorted(row["name"].rsplit(":", 1)[1] for row in names)
            return found if len(found) == 2 else None

        assert await until(rows) == [f"{service.port}/0", f"{service.port}/1"]
        samples = await scrape(service.http)
        by_child = [rss(pid) for pid in pids]
        memory = samples[("process_resident_memory_bytes", ())]
        assert 0.7 * sum(by_child) < memory < 1.3 * sum(by_child), (memory, by_child)
