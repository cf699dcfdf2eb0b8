"""Where worker_server's current job comes from: Postgres, whatever Kafka still holds.

The stack is restarted the way production loses the `job` topic's newest
record (retention during a stall, a topic recreated, a cluster rebuilt): a new
Tansu with fresh topics, the old Postgres. Both fan-out modes. A welcomed
worker is sent the newest stored job; a job below it is stored but sent to no
one, live or replayed; once the old chain is retired, the lower one is
current. And worker_server waits for Postgres at start-up without hanging.

Real sockets, RabbitMQ, Postgres and Tansu, with a database and vhost of
their own (the session's processors must not store these jobs) and a
process_job_worker on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import pytest

from misc.tansu import tansu
from process_job_worker.app import create_app as create_job_app
from process_job_worker.settings import ProcessJobWorkerSettings
from shared.db import migrate, with_database
from shared.protocol import challenge_digest
from shared.setup import SetupSettings, setup
from tests.support.clients import (
    Client,
    challenge,
    job,
    job_sent,
    node_client,
    welcome,
    worker_and_node,
    worker_client,
)
from tests.support.http import ADMIN_REQUEST
from tests.support.ports import free_port
from tests.support.stack import (
    POSTGRES_SERVER,
    RABBITMQ_SERVER,
    RUN_ID,
    Backends,
    Stack,
    StartServers,
    drop_database,
    private_vhost,
    server_ports,
    serving,
    serving_server,
    wait_ready,
)
from worker_server import ws
from worker_server.app import create_app as create_worker_app
from worker_server.settings import WorkerServerSettings

HEIGHT = 5_000  # the old chain's newest job
LOWER = HEIGHT - 50  # a chain restarted below it


@dataclass(frozen=True)
class Restarted:
    backends: Backends  # the old Postgres, a new Tansu
    mode: str
    task_id: str  # the old chain's newest job, sent through the stack before the restart
    start_servers: StartServers

    def serve(self) -> contextlib.AbstractAsyncContextManager[Stack]:
        """process_job_worker, node_server and worker_server on the restarted backends."""
        return running(self.start_servers, self.backends, self.mode)

    def frame(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "epoch_challenge": challenge(HEIGHT)}


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    with private_vhost(f"wspool_current_{RUN_ID}") as name:
        if not name:
            pytest.skip("needs rabbitmqctl for a private vhost")
        yield name


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"wspool_current_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    try:
        yield with_database(f"{POSTGRES_SERVER}/postgres", name)
    finally:
        await drop_database(name)


@contextlib.asynccontextmanager
async def new_tansu(dsn: str, vhost: str) -> AsyncIterator[Backends]:
    """A Tansu of its own, topics created by the setup, as after a rebuild."""
    with tansu(free_port()) as kafka:
        backends = Backends(dsn, f"{RABBITMQ_SERVER}/{vhost}", kafka, vhost)
        await setup(SetupSettings(**backends.settings()))
        yield backends


@contextlib.asynccontextmanager
async def running(
    start_servers: StartServers, backends: Backends, mode: str
) -> AsyncIterator[Stack]:
    """process_job_worker, node_server and worker_server on `backends`."""
    processor = create_job_app(ProcessJobWorkerSettings(**backends.settings(port=free_port())))
    async with (
        serving(processor, free_port()),
        start_servers(fanout_mode=mode, **backends.settings()) as stack,
    ):
        yield stack


@pytest.fixture(params=["shared", "per_connection"])
async def restarted(
    request: pytest.FixtureRequest, vhost: str, start_servers: StartServers
) -> AsyncIterator[Restarted]:
    mode = request.param
    async with database() as dsn:
        async with (
            new_tansu(dsn, vhost) as before,
            running(start_servers, before, mode) as stack,
            worker_client(stack.worker_url) as worker,
            node_client(stack.node_url) as node,
        ):
            task_id = await job_sent(node, worker, HEIGHT)
        async with new_tansu(dsn, vhost) as after:
            yield Restarted(after, mode, task_id, start_servers)


async def frames_until_quiet(client: Client, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Every frame until none arrives for `quiet` seconds (a close fails the test)."""
    frames = []
    while True:
        try:
            frames.append(await client.receive(quiet))
        except TimeoutError:
            return frames


async def broadcast(dsn: str, height: int) -> str:
    """Wait until the job at `height` is stored and on the `job` topic; its task id."""
    connection = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(15):
            while True:
                task_id = await connection.fetchval(
                    "SELECT task_id FROM job WHERE block_height = $1 AND broadcast_at IS NOT NULL",
                    height,
                )
                if task_id is not None:
                    return str(task_id)
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def test_a_restarted_stack_sends_a_welcomed_worker_the_newest_stored_job(
    restarted: Restarted,
) -> None:
    async with restarted.serve() as stack, worker_client(stack.worker_url) as worker:
        assert await frames_until_quiet(worker) == [restarted.frame()]


async def test_a_job_below_the_current_one_is_stored_and_sent_to_no_worker(
    restarted: Restarted,
) -> None:
    dsn = restarted.backends.postgres_dsn
    async with restarted.serve() as stack, worker_and_node(stack) as (worker, node):
        await node.send(job(LOWER))
        await broadcast(dsn, LOWER)
        assert await frames_until_quiet(worker) == [restarted.frame()]
        assert await node.nothing_within(0.1), "the node is not told (docs/protocol.md)"
        async with worker_client(stack.worker_url) as late:
            assert await frames_until_quiet(late) == [restarted.frame()]
        await job_sent(node, worker, HEIGHT + 1)  # the control: a higher job is delivered


async def test_a_lower_job_kafka_replays_after_a_restart_is_sent_to_no_worker(
    restarted: Restarted,
) -> None:
    """The `job` topic's last record is below the newest stored job: history."""
    async with restarted.serve() as stack, node_client(stack.node_url) as node:
        await node.send(job(LOWER))
        await broadcast(restarted.backends.postgres_dsn, LOWER)
    async with restarted.serve() as stack, worker_client(stack.worker_url) as worker:
        assert await frames_until_quiet(worker) == [restarted.frame()]


async def test_once_the_old_chain_is_retired_the_lower_one_is_current(
    restarted: Restarted,
) -> None:
    async with restarted.serve() as stack, worker_and_node(stack) as (worker, node):
        assert await frames_until_quiet(worker) == [restarted.frame()]
        await node.send(job(LOWER))
        lower_task = await broadcast(restarted.backends.postgres_dsn, LOWER)
        url = f"{stack.node_http}/api/retire?above_height={LOWER}"
        session = aiohttp.ClientSession(headers=ADMIN_REQUEST)
        async with session, session.post(url) as reply:
            assert reply.status == 200
            assert await reply.json() == {
                "above_height": LOWER,
                "retired": 1,
                "current": {"task_id": lower_task, "block_height": LOWER},
            }
        lower = {"task_id": lower_task, "epoch_challenge": challenge(LOWER)}
        assert await frames_until_quiet(worker) == [lower]
        async with worker_client(stack.worker_url) as late:
            assert await frames_until_quiet(late) == [lower]
        await job_sent(node, worker, LOWER + 1)  # the lower chain goes on


@contextlib.asynccontextmanager
async def forwarding(port: int, to: str) -> AsyncIterator[None]:
    """Postgres back on `port` (nothing listened there before): a TCP relay to `to`."""
    target = urlsplit(to)
    open_writers: set[asyncio.StreamWriter] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream = await asyncio.open_connection(
            target.hostname, target.port or 5432
        )
        open_writers.update((writer, upstream))
        await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for writer in open_writers:
            writer.transport.abort()


async def test_worker_server_waits_for_postgres_at_start_up_without_hanging(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up without Postgres: not ready, a welcome refused 1011 (never left without a job);
    once Postgres answers, the current job is read and sent."""
    monkeypatch.setattr(ws, "CURRENT_JOB_WAIT_SECONDS", 0.3)
    port = free_port()
    async with database() as dsn:
        await migrate(dsn)
        task_id = uuid.uuid4()
        connection = await asyncpg.connect(dsn)
        await connection.execute(
            "INSERT INTO job (block_height, epoch_challenge, task_id, challenge_digest) "
            "VALUES ($1, $2::jsonb, $3, $4)",
            HEIGHT,
            orjson.dumps(challenge(HEIGHT)).decode(),
            task_id,
            challenge_digest(challenge(HEIGHT)),
        )
        await connection.close()
        relayed = f"postgresql://postgres@127.0.0.1:{port}/{urlsplit(dsn).path.lstrip('/')}"
        settings = WorkerServerSettings(
            **backends.settings(
                **server_ports(),
                postgres_dsn=relayed,
                server_instance=f"current-{uuid.uuid4().hex[:8]}",
            )
        )
        url = f"ws://127.0.0.1:{settings.port}/"
        async with serving_server(settings, create_worker_app(settings)) as http:
            async with aiohttp.ClientSession() as session, session.get(f"{http}/readyz") as reply:
                assert reply.status == 503
                assert (await reply.json())["checks"]["current_job"] is False
            async with worker_client(url, welcome()) as worker:
                assert await worker.closed() == (1011, "database unavailable")
            async with forwarding(port, POSTGRES_SERVER):
                await wait_ready(http)
                async with worker_client(url) as worker:
                    frame = {"task_id": str(task_id), "epoch_challenge": challenge(HEIGHT)}
                    assert await frames_until_quiet(worker) == [frame]
