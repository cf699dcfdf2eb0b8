"""The test environment's building blocks: private backends, in-process servers.

`tests/conftest.py` turns these into fixtures; tests import the types from here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from misc.tansu import tansu
from shared.db import with_database
from shared.runtime.listeners import listening
from shared.setup import SetupSettings, setup
from shared.websocket.settings import WebsocketServerSettings
from tests.support.http import status
from tests.support.poll import until
from tests.support.ports import free_port
from worker_server.settings import WorkerServerSettings

# How an address block gets banned, as deployed, and never (for the servers of
# tests that send bad frames from 127.0.0.1, whose block every test shares).
BLOCK_BANS = {
    name: WorkerServerSettings.model_fields[name].default
    for name in ("ban_address_min_bad", "ban_ip_after_identities")
}
NO_BLOCK_BANS = {"ban_address_min_bad": 10**9, "ban_ip_after_identities": 0}

POSTGRES_SERVER = os.environ.get("WSPOOL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
RABBITMQ_SERVER = os.environ.get("WSPOOL_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")
RUN_ID = uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class Backends:
    postgres_dsn: str
    rabbitmq_url: str
    kafka_bootstrap_servers: str
    vhost: str

    def settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "postgres_dsn": self.postgres_dsn,
            "rabbitmq_url": self.rabbitmq_url,
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "host": "127.0.0.1",
            **overrides,
        }

    def env(self, prefix: str) -> dict[str, str]:
        return {
            f"{prefix}POSTGRES_DSN": self.postgres_dsn,
            f"{prefix}RABBITMQ_URL": self.rabbitmq_url,
            f"{prefix}KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
        }


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def private_vhost(name: str) -> Iterator[str]:
    """A private vhost when rabbitmqctl is at hand, else the default one."""
    if shutil.which("rabbitmqctl") is None:
        yield ""
        return
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            _rabbitmqctl("delete_vhost", name)


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def private_backends(name: str) -> AsyncIterator[Backends]:
    """A database, a RabbitMQ vhost (when rabbitmqctl is at hand) and a Tansu of their own,
    set up like production; all of it gone when the block ends."""
    with private_vhost(name) as vhost, tansu(free_port()) as kafka:
        result = Backends(
            postgres_dsn=with_database(f"{POSTGRES_SERVER}/postgres", name),
            rabbitmq_url=f"{RABBITMQ_SERVER}/{vhost}",
            kafka_bootstrap_servers=kafka,
            vhost=vhost,
        )
        await setup(SetupSettings(**result.settings(solution_partitions=2)))
        try:
            yield result
        finally:
            await drop_database(name)


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[str]:
    """Serve an app on 127.0.0.1:port until the block ends (graceful shutdown)."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def server_ports() -> dict[str, int]:
    """Free `port` and `internal_port` settings for one websocket server."""
    return {"port": free_port(), "internal_port": free_port()}


@contextlib.asynccontextmanager
async def serving_server(
    settings: WebsocketServerSettings, app: web.Application
) -> AsyncIterator[str]:
    """Serve a websocket server on both its ports; yields its internal HTTP base URL."""
    async with listening(app, settings):
        yield internal_http(settings)


def internal_http(settings: WebsocketServerSettings) -> str:
    return f"http://{settings.host}:{settings.internal_port}"


@dataclass
class Stack:
    node_url: str
    worker_url: str
    node_http: str  # the internal ports: health, metrics, API
    worker_http: str

    @property
    def node_address(self) -> str:
        """host:port of node_server's public (websocket) port."""
        return self.node_url.removeprefix("ws://").rstrip("/")

    @property
    def worker_address(self) -> str:
        return self.worker_url.removeprefix("ws://").rstrip("/")


@dataclass
class Processors:
    """Where the session's process_job_worker and process_solution_worker answer HTTP."""

    job_http: str
    solution_http: str


StartServers = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


async def wait_ready(*base_urls: str, timeout: float = 20.0) -> None:
    """Until every service at `base_urls` answers /readyz with 200."""

    async def answers() -> list[int | None]:
        return [await status(f"{base}/readyz") for base in base_urls]

    await until(answers, lambda got: all(code == 200 for code in got), timeout=timeout)


def servers_with(**settings: Any) -> Any:
    """A module's own node_server and worker_server, started once with `settings`
    (as `start_servers` takes them): `strict = servers_with(max_invalid_messages=3)`."""

    @pytest.fixture(scope="module")
    async def servers(start_servers: StartServers) -> AsyncIterator[Stack]:
        async with start_servers(**settings) as stack:
            yield stack

    return servers
