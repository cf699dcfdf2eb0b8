"""Candidates are earned (issue #19): a solution's target is its sender's claim.

Each worker (its address and hardware_id) may send `candidates_per_minute`
down the candidate lane, each address `candidates_per_minute_per_address`;
beyond that a candidate takes the share lane: stored, still delivered, and
counted as `wspool_solution_lanes_total{lane="over_budget"}`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from node_server.app import create_app as create_node_app
from node_server.settings import NodeServerSettings
from process_job_worker.app import create_app as create_job_app
from process_job_worker.settings import ProcessJobWorkerSettings
from process_solution_worker.persist import SOLUTIONS
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.microbatch import items
from shared.pipeline.app import Pipeline, create_consumer_app
from shared.protocol import SolutionMessage
from shared.routes import CANDIDATE, SOLUTION
from tests.integration.test_candidate_lane import eventually_stored, lanes
from tests.support import clients
from tests.support import stack as stacks
from tests.support.ports import free_port
from tests.support.stack import Backends, Stack
from worker_server.app import create_app as create_worker_app
from worker_server.settings import WorkerServerSettings

BUDGETS = {"candidates_per_minute": 2, "candidates_per_minute_per_address": 3}


@contextlib.asynccontextmanager
async def shares_consumed_only(backends: Backends) -> AsyncIterator[tuple[Stack, str]]:
    """Servers whose share lane is consumed and whose candidate lane is not: what takes
    the candidate lane stays in its queue, what takes the share lane is stored and sent."""
    with stacks.private_vhost(f"wspool_budget_{uuid.uuid4().hex[:8]}") as vhost:
        if not vhost:
            pytest.skip("needs rabbitmqctl for a private vhost")
        url = f"{stacks.RABBITMQ_SERVER}/{vhost}"
        consumer = ProcessSolutionWorkerSettings(
            **backends.settings(rabbitmq_url=url, port=free_port())
        )
        shares_only = create_consumer_app(
            consumer, Pipeline(SOLUTION.queue, SolutionMessage, SOLUTIONS)
        )
        jobs = create_job_app(
            ProcessJobWorkerSettings(**backends.settings(rabbitmq_url=url, port=free_port()))
        )
        node = NodeServerSettings(**backends.settings(**stacks.server_ports(), rabbitmq_url=url))
        worker = WorkerServerSettings(
            **backends.settings(
                **stacks.server_ports(),
                **BUDGETS,
                rabbitmq_url=url,
                server_instance=f"budget-{uuid.uuid4().hex[:8]}",
            )
        )
        async with (
            stacks.serving(jobs, free_port()),
            stacks.serving(shares_only, free_port()),
            stacks.serving_server(node, create_node_app(node)) as node_http,
            stacks.serving_server(worker, create_worker_app(worker)) as worker_http,
        ):
            await stacks.wait_ready(node_http, worker_http)
            yield (
                Stack(
                    node_url=f"ws://127.0.0.1:{node.port}/",
                    worker_url=f"ws://127.0.0.1:{worker.port}/",
                    node_http=node_http,
                    worker_http=worker_http,
                ),
                url,
            )


async def candidate_queue(url: str) -> list[dict[str, Any]]:
    """The solutions waiting in the candidate lane's queue (left there)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(CANDIDATE.queue, passive=True)
        waiting = []
        while (message := await queue.get(fail=False, no_ack=False)) is not None:
            waiting += [orjson.loads(item.body) for item, _ in items(message)]
        return waiting


async def test_candidates_past_a_budget_take_the_share_lane_stored_and_delivered(
    backends: Backends, db: asyncpg.Pool
) -> None:
    height = clients.next_height()
    bodies = {name: clients.solution_body() for name in ("a1", "a2", "a3", "a4", "b1", "b2", "c1")}
    async with shares_consumed_only(backends) as (stack, url):
        async with (
            clients.node_client(stack.node_url) as node,
            clients.worker_client(stack.worker_url, clients.welcome("rig-a")) as rig_a,
            clients.worker_client(stack.worker_url, clients.welcome("rig-b")) as rig_b,
            clients.worker_client(
                stack.worker_url, clients.welcome("rig-c"), source="127.0.0.2"
            ) as rig_c,
        ):
            task_id = await clients.job_sent(node, rig_a, height, proof_target=100)
            for rig in (rig_b, rig_c):
                await rig.job_for(height)
            before = await lanes(stack.worker_http)
            # rig-a: two within its own budget, two past it; rig-b, same address: one
            # within the address's budget (three), one past it; rig-c, another address.
            for rig, names in ((rig_a, "a1 a2 a3 a4"), (rig_b, "b1 b2"), (rig_c, "c1")):
                for name in names.split():
                    await rig.send(clients.solution(task_id, target=100, body=bodies[name]))
            # Past the budget: the share lane, consumed here, stores and delivers them.
            delivered = [await node.receive() for _ in range(3)]
            assert sorted(map(orjson.dumps, delivered)) == sorted(
                orjson.dumps(bodies[name]) for name in ("a3", "a4", "b2")
            )
            await eventually_stored(db, task_id, {100: 3})
            after = await lanes(stack.worker_http)
            # Within it: the candidate lane, whose queue nothing here consumes.
            waiting = await candidate_queue(url)
            assert await node.nothing_within(0.3)
        assert sorted(orjson.dumps(message["solution"]) for message in waiting) == sorted(
            orjson.dumps(bodies[name]) for name in ("a1", "a2", "b1", "c1")
        )
        assert after.get("candidate", 0) - before.get("candidate", 0) == 4
        assert after.get("over_budget", 0) - before.get("over_budget", 0) == 3
