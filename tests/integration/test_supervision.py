"""Every background loop survives an exception injected into it; one that never
recovers turns /healthz to 503. A subscriber that raises, or whose own fan-out
task dies, costs only itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

import shared.fanout.consume
import shared.fanout.modes
import shared.pipeline.consumer
import shared.rabbit
import worker_server.liveness
from process_job_worker.app import create_app as create_job_app
from process_job_worker.settings import ProcessJobWorkerSettings
from shared.fanout.stream import Stream
from shared.routes import JOB
from tests.support import clients
from tests.support.clients import (
    job_sent,
    next_height,
    node_client,
    worker_client,
)
from tests.support.http import status
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.stack import Backends, StartServers, serving
from worker_server.jobs import JobUpdate
from worker_server.ws import WorkerSession


def failing_first(calls: int, original: Callable[..., Any]) -> Callable[..., Any]:
    """`original`, except that its first `calls` calls raise."""
    made = [0]

    async def injected(*args: Any, **kwargs: Any) -> Any:
        made[0] += 1
        if made[0] <= calls:
            raise RuntimeError("injected failure")
        return await original(*args, **kwargs)

    return injected


def failed_tasks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.task  # type: ignore[attr-defined]
        for record in caplog.records
        if record.getMessage() == "task_failed" and record.exc_info is not None
    ]


async def test_publisher_fanout_and_liveness_recover_from_an_injected_failure(
    start_servers: StartServers,
    db: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Both servers' publishers (worker_server has two: shares and candidates) and
    # fan-outs (node_server has two: solutions and candidates) fail once each at
    # start; the sweep once.
    monkeypatch.setattr(
        shared.rabbit, "declare_topology", failing_first(3, shared.rabbit.declare_topology)
    )
    monkeypatch.setattr(
        shared.fanout.modes, "consume", failing_first(3, shared.fanout.consume.consume)
    )
    monkeypatch.setattr(
        worker_server.liveness,
        "touch_worker_rows",
        failing_first(1, worker_server.liveness.touch_worker_rows),
    )
    interval = 0.2
    with caplog.at_level(logging.ERROR, logger="shared.runtime.lifecycle"):
        async with start_servers(
            fanout_mode="shared", worker={"liveness_interval_seconds": interval}
        ) as servers:
            hardware_id = f"gpu-{clients.next_height()}"
            async with (
                clients.worker_client(servers.worker_url, clients.welcome(hardware_id)) as worker,
                clients.node_client(servers.node_url) as node,
            ):
                # Jobs flow (node publisher, worker fan-out), solutions come back
                # (worker publisher, node fan-out): nothing was lost to the failures.
                task_id = await clients.job_sent(node, worker, clients.next_height())
                body = clients.solution_body()
                await worker.send(clients.solution(task_id, body=body))
                assert await node.receive() == body
                # The sweep failed once and runs again, without closing live rows.
                row = await _row_seen_again(db, hardware_id, after_seconds=4 * interval)
                assert row["disconnected_at"] is None
    assert sorted(failed_tasks(caplog)) == [
        "fanout-job",
        "fanout-solution",
        "fanout-solution.candidate",
        "publisher-job",
        "publisher-solution",
        "publisher-solution.candidate",
        "worker-liveness",
    ]


async def _row_seen_again(
    db: asyncpg.Pool, hardware_id: str, after_seconds: float
) -> asyncpg.Record:
    """The worker's row once its last_seen_at has moved past the row's opening."""
    query = "SELECT last_seen_at, connected_at, disconnected_at FROM worker WHERE hardware_id = $1"
    return await until(
        lambda: db.fetchrow(query, hardware_id),
        lambda row: (
            row is not None
            and (row["last_seen_at"] - row["connected_at"]).total_seconds() > after_seconds
        ),
        timeout=10,
    )


async def test_consumer_recovers_from_an_injected_failure(
    backends: Backends, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        shared.pipeline.consumer,
        "declare_topology",
        failing_first(2, shared.pipeline.consumer.declare_topology),
    )
    settings = ProcessJobWorkerSettings(**backends.settings())
    with caplog.at_level(logging.ERROR, logger="shared.runtime.lifecycle"):
        async with serving(create_job_app(settings), free_port()) as address:
            # Consuming again (readiness says so), and alive all along.
            assert await _status_within(f"http://{address}/readyz", 200, seconds=15)
            assert await _status_within(f"http://{address}/healthz", 200, seconds=1)
    assert failed_tasks(caplog) == ["pipeline", "pipeline"]


async def test_a_consumer_that_never_recovers_turns_healthz_to_503(
    backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        shared.pipeline.consumer,
        "declare_topology",
        failing_first(10**6, shared.pipeline.consumer.declare_topology),
    )
    settings = ProcessJobWorkerSettings(**backends.settings(task_failure_limit=3))
    async with serving(create_job_app(settings), free_port()) as address:
        assert await _status_within(f"http://{address}/healthz", 503, seconds=15)


async def _status_within(url: str, expected: int, seconds: float) -> bool:
    answered = await until(lambda: status(url), lambda got: got == expected, timeout=seconds)
    return answered == expected


@pytest.mark.parametrize("mode", ["shared", "per_connection"])
async def test_a_subscriber_whose_offer_raises_is_closed_1011_and_others_carry_on(
    mode: str,
    start_servers: StartServers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim_id = f"victim-{clients.next_height()}"
    broken = asyncio.Event()
    offer = WorkerSession.offer

    def offer_or_raise(self: WorkerSession, update: JobUpdate) -> None:
        assert self.welcome is not None
        if broken.is_set() and self.welcome.hardware_id == victim_id:
            raise RuntimeError("injected bug in offer")
        offer(self, update)

    monkeypatch.setattr(WorkerSession, "offer", offer_or_raise)
    with caplog.at_level(logging.ERROR, logger="shared.websocket.connection"):
        async with (
            start_servers(fanout_mode=mode) as servers,
            clients.node_client(servers.node_url) as node,
            clients.worker_client(servers.worker_url) as bystander,
            clients.worker_client(servers.worker_url, clients.welcome(victim_id)) as victim,
        ):
            # The control: before the bug, the victim gets jobs like anyone.
            height = clients.next_height()
            await clients.job_sent(node, victim, height)
            await bystander.job_for(height)
            broken.set()
            height = clients.next_height()
            await clients.job_sent(node, bystander, height)
            assert await victim.closed() == (1011, "internal error")
            # The fan-out itself goes on.
            await clients.job_sent(node, bystander, clients.next_height())
    failures = [r for r in caplog.records if r.getMessage() == "connection_failed"]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_a_per_connection_fanout_task_that_dies_closes_its_connection_1011_at_once(
    start_servers: StartServers,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kills: list[asyncio.Event] = []  # one per consumer of the job topic, in start order
    consume = shared.fanout.consume.consume

    async def consume_until_killed(
        consumer: Any, stream: Stream[Any], deliver: Any, **kwargs: Any
    ) -> None:
        if stream.topic != JOB.topic:
            return await consume(consumer, stream, deliver, **kwargs)
        killed = asyncio.Event()
        kills.append(killed)
        reading = asyncio.create_task(consume(consumer, stream, deliver, **kwargs))
        try:
            await killed.wait()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        raise RuntimeError("injected death of a fan-out task")

    monkeypatch.setattr(shared.fanout.modes, "consume", consume_until_killed)
    with caplog.at_level(logging.ERROR, logger="shared.websocket.connection"):
        async with (
            start_servers(fanout_mode="per_connection") as servers,
            node_client(servers.node_url) as node,
            worker_client(servers.worker_url) as bystander,
        ):
            await job_sent(node, bystander, next_height())
            # The worker server's cache of known tasks reads the job topic too.
            await _until(lambda: len(kills) == 2)
            async with worker_client(servers.worker_url) as victim:
                # The control: its fan-out task feeds it, until that task dies.
                await job_sent(node, victim, next_height())
                assert len(kills) == 3
                kills[2].set()
                assert await victim.closed(timeout=2) == (1011, "internal error")
                # The other connection is open and fed.
                await job_sent(node, bystander, next_height())
    failures = [r for r in caplog.records if r.getMessage() == "connection_failed"]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert str(failures[0].exc_info[1]) == "injected death of a fan-out task"


async def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.05)
