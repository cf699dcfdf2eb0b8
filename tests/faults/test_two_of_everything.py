"""Two instances of every service on one set of brokers: traffic crosses instances,
a solution sent to both worker_servers is stored and delivered once, and stopping
one instance of each under load loses nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator

import pytest

from shared.catalogue import SERVICES
from tests.support import clients
from tests.support.accounting import assert_clean_logs, fetch, run_round
from tests.support.fault_stack import SHUTDOWN_TIMEOUT_SECONDS, FaultStack, fault_stack

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[FaultStack]:
    async with fault_stack(instances=2) as stack:
        yield stack


async def test_traffic_crosses_instances_and_a_solution_sent_twice_counts_once(
    pair: FaultStack,
) -> None:
    node_a = pair.services["node_server"]
    worker_a, worker_b = pair.services["worker_server"], pair.services["worker_server#2"]
    height = clients.next_height()
    async with (
        clients.worker_client(worker_a.ws) as on_a,
        clients.worker_client(worker_b.ws) as on_b,
        clients.node_client(node_a.ws) as node,
    ):
        await node.send(clients.job(height, proof_target=1))
        task = (await on_a.job_for(height, timeout=15))["task_id"]
        assert (await on_b.job_for(height, timeout=15))["task_id"] == task

        found_on_b = clients.solution_body()
        await on_b.send(clients.solution(task, body=found_on_b))
        assert await node.receive(timeout=15) == found_on_b

        twice = clients.solution_body()
        await asyncio.gather(
            on_a.send(clients.solution(task, body=twice)),
            on_b.send(clients.solution(task, body=twice)),
        )
        assert await node.receive(timeout=15) == twice
        assert await node.nothing_within(1.0), "delivered once"
    nonce = str(twice["partial_solution"]["nonce"])
    rows = await fetch(pair.postgres.dsn, "SELECT id FROM solution WHERE nonce = $1", nonce)
    assert rows is not None and len(rows) == 1, "stored once"


async def test_stopping_one_instance_of_each_under_load_loses_nothing(pair: FaultStack) -> None:
    # Clients talk to the second instances; the first of every service is stopped.
    survivors = dataclasses.replace(
        pair, services={name: pair.services[f"{name}#2"] for name in SERVICES}
    )
    exits: list[int] = []

    async def stop_first_instances() -> None:
        for name in SERVICES:
            pair.services[name].signal(signal.SIGTERM)
        for name in SERVICES:
            exits.append(await pair.services[name].exited(SHUTDOWN_TIMEOUT_SECONDS * 4))

    figures, _ = await run_round(
        survivors,
        "SIGTERM one instance of each",
        stop_first_instances,
        solutions=300,
        jobs=30,
        fault_after=100,
    )
    assert exits == [0, 0, 0, 0]
    assert figures.solutions_refused == 0 and figures.jobs_refused == 0
    assert set(figures.close_codes) <= {1001}
    assert_clean_logs(pair)
