"""Test environment: real Postgres, RabbitMQ and a private Tansu, isolated per run.

Each session gets its own database (`wspool_test_<id>`), its own RabbitMQ
vhost and its own Tansu broker, so runs never see each other's data or the
messages of a `make run` stack on the same machine. Services run in-process
on the session's event loop and are reached through real sockets.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from node_server.app import create_app as create_node_app
from node_server.settings import NodeServerSettings
from process_job_worker.app import create_app as create_job_app
from process_job_worker.settings import ProcessJobWorkerSettings
from process_solution_worker.app import create_app as create_solution_app
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from tests.support.ports import free_port
from tests.support.stack import (
    NO_BLOCK_BANS,
    RUN_ID,
    Backends,
    Processors,
    Stack,
    StartServers,
    private_backends,
    server_ports,
    serving,
    serving_server,
    wait_ready,
)
from worker_server.app import create_app as create_worker_app
from worker_server.settings import WorkerServerSettings


@pytest.fixture(scope="session")
async def backends() -> AsyncIterator[Backends]:
    async with private_backends(f"wspool_test_{RUN_ID}") as result:
        yield result


@pytest.fixture(scope="session")
async def db(backends: Backends) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(backends.postgres_dsn, min_size=1, max_size=4) as pool:
        yield pool


@pytest.fixture(scope="session")
async def processors(backends: Backends) -> AsyncIterator[Processors]:
    """Both persist-and-broadcast workers, for the whole session."""
    job = create_job_app(ProcessJobWorkerSettings(**backends.settings(port=free_port())))
    solution = create_solution_app(
        ProcessSolutionWorkerSettings(**backends.settings(port=free_port()))
    )
    async with (
        serving(job, free_port()) as job_address,
        serving(solution, free_port()) as solution_address,
    ):
        yield Processors(
            job_http=f"http://{job_address}", solution_http=f"http://{solution_address}"
        )


@pytest.fixture(scope="session")
def start_servers(backends: Backends, processors: Processors) -> StartServers:
    """Start a node_server and a worker_server with the given setting overrides."""

    @contextlib.asynccontextmanager
    async def start(
        node: dict[str, Any] | None = None,
        worker: dict[str, Any] | None = None,
        ready: bool = True,
        **common: Any,
    ) -> AsyncIterator[Stack]:
        node_settings = NodeServerSettings(
            **backends.settings(**server_ports(), **common, **(node or {}))
        )
        worker_settings = WorkerServerSettings(
            **backends.settings(
                **server_ports(),
                **{
                    "server_instance": f"test-{uuid.uuid4().hex[:8]}",
                    # A test's servers share its loop and a busy machine: shedding
                    # would answer at random. test_overload.py turns it on.
                    "shed_lag_ms": 0,
                    # Every test connects from 127.0.0.1: one address block, whose
                    # handshake rate test_addresses.py tests with its own servers.
                    "handshakes_per_second": 1_000_000,
                    "handshake_burst": 1_000_000,
                    # Nor is that block ever banned: a ban is stored for every later
                    # server to learn. The ban tests pass BLOCK_BANS from blocks of their own.
                    **NO_BLOCK_BANS,
                    **common,
                    **(worker or {}),
                },
            )
        )
        async with (
            serving_server(node_settings, create_node_app(node_settings)) as node_http,
            serving_server(worker_settings, create_worker_app(worker_settings)) as worker_http,
        ):
            if ready:
                await wait_ready(node_http, worker_http)
            yield Stack(
                node_url=f"ws://127.0.0.1:{node_settings.port}/",
                worker_url=f"ws://127.0.0.1:{worker_settings.port}/",
                node_http=node_http,
                worker_http=worker_http,
            )

    return start


@pytest.fixture(scope="session", params=["shared", "per_connection"])
async def stack(
    request: pytest.FixtureRequest, start_servers: StartServers
) -> AsyncIterator[Stack]:
    """A node_server and worker_server in each fan-out mode; tests run against both."""
    async with start_servers(fanout_mode=request.param) as servers:
        yield servers


@pytest.fixture(scope="session")
async def faults() -> AsyncIterator[Any]:
    """The whole system on private Postgres, RabbitMQ and Tansu, services as subprocesses."""
    from tests.support.fault_stack import fault_stack as start

    async with start() as stack:
        yield stack
