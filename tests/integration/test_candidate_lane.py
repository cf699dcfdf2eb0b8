"""The candidate lane (issue #12): block candidates travel apart from shares.

A solution at or above the lowest proof target waiting at its height goes to
exchange `solution.candidate`, its own queue and consumer, and topic
`solution.candidate`; a share goes the ordinary way. Shares waiting in their
queue can't hold a candidate up, and a solution sent down both lanes is stored
and delivered once.
"""

from __future__ import annotations

import uuid

import aio_pika
import asyncpg
import orjson
import pytest

from node_server.app import create_app as create_node_app
from node_server.settings import NodeServerSettings
from process_job_worker.app import create_app as create_job_app
from process_job_worker.settings import ProcessJobWorkerSettings
from process_solution_worker.app import CANDIDATE_LIMITS
from process_solution_worker.app import create_app as create_solution_app
from process_solution_worker.persist import CANDIDATES
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.codec import encode
from shared.pipeline.app import Pipeline, create_consumer_app
from shared.protocol import SolutionMessage, challenge_digest, now_ns
from shared.routes import CANDIDATE, SOLUTION
from tests.support import clients
from tests.support.metrics import scrape
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.stack import (
    RABBITMQ_SERVER,
    Backends,
    Stack,
    private_vhost,
    server_ports,
    serving,
    serving_server,
    wait_ready,
)
from worker_server.app import create_app as create_worker_app
from worker_server.settings import WorkerServerSettings


async def lanes(worker_http: str) -> dict[str, float]:
    """worker_server's `wspool_solution_lanes_total` by lane."""
    return {
        dict(labels)["lane"]: value
        for (name, labels), value in (await scrape(worker_http)).items()
        if name == "wspool_solution_lanes_total"
    }


async def stored(db: asyncpg.Pool, task_id: str) -> dict[int, int]:
    """Rows per solution_target for a task."""
    rows = await db.fetch(
        "SELECT solution_target, count(*) AS n FROM solution WHERE task_id = $1 "
        "GROUP BY solution_target",
        uuid.UUID(task_id),
    )
    return {row["solution_target"]: row["n"] for row in rows}


async def eventually_stored(db: asyncpg.Pool, task_id: str, expected: dict[int, int]) -> None:
    await until(lambda: stored(db, task_id), lambda rows: rows == expected)


async def test_a_candidate_takes_its_lane_and_a_share_the_ordinary_one(
    stack: Stack, db: asyncpg.Pool
) -> None:
    candidate = clients.solution_body()
    async with clients.on_a_new_job(stack, proof_target=100) as (worker, node, task_id):
        before = await lanes(stack.worker_http)
        await worker.send(clients.solution(task_id, target=99))  # a share: stored, not forwarded
        await worker.send(clients.solution(task_id, target=100, body=candidate))
        assert await node.receive() == candidate
        assert await node.nothing_within(0.3)
    await eventually_stored(db, task_id, {99: 1, 100: 1})
    # The share is done once stored: marked broadcast, though no node wants it on Kafka.
    unmarked = "SELECT count(*) FROM solution WHERE task_id = $1 AND broadcast_at IS NULL"
    await until(lambda: db.fetchval(unmarked, uuid.UUID(task_id)), lambda count: count == 0)
    after = await lanes(stack.worker_http)
    assert after.get("candidate", 0) - before.get("candidate", 0) == 1
    assert after.get("share", 0) - before.get("share", 0) == 1
    job_row = await db.fetchrow(
        "SELECT proof_target FROM job WHERE task_id = $1", uuid.UUID(task_id)
    )
    assert job_row["proof_target"] == 100


async def test_the_lowest_target_sent_for_a_height_decides(stack: Stack, db: asyncpg.Pool) -> None:
    height = clients.next_height()
    between = clients.solution_body()
    async with clients.worker_and_nodes(stack, 2) as (worker, [strict, lenient]):
        task_id = await clients.job_sent(strict, worker, height, proof_target=1000)
        await lenient.send(clients.job(height, proof_target=10))  # the same job, a lower target
        lowered = "SELECT proof_target FROM job WHERE task_id = $1 AND broadcast_at IS NOT NULL"
        await until(lambda: db.fetchval(lowered, uuid.UUID(task_id)), lambda target: target == 10)
        await worker.send(clients.solution(task_id, target=50, body=between))
        assert await lenient.receive() == between
        assert await strict.nothing_within(0.3)  # below its own target
    await eventually_stored(db, task_id, {50: 1})
    # A higher target later does not raise it.
    async with (
        clients.node_client(stack.node_url) as later,
        clients.worker_client(stack.worker_url) as other,
    ):
        await clients.job_sent(later, other, height, proof_target=5000)
    assert (
        await db.fetchval("SELECT proof_target FROM job WHERE task_id = $1", uuid.UUID(task_id))
        == 10
    )


async def test_a_solution_sent_down_both_lanes_is_stored_and_delivered_once(
    stack: Stack, db: asyncpg.Pool, backends: Backends
) -> None:
    height = clients.next_height()
    body = clients.solution_body()
    async with clients.worker_and_node(stack) as (worker, node):
        task_id = await clients.job_sent(node, worker, height, proof_target=100)
        message = SolutionMessage(
            task_id=uuid.UUID(task_id),
            solution=body,
            solution_target=100,
            hardware_id="both-lanes",
            caption="rig",
        )
        async with await aio_pika.connect(backends.rabbitmq_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            for exchange in (SOLUTION.exchange, CANDIDATE.exchange):
                await (await channel.get_exchange(exchange)).publish(
                    aio_pika.Message(encode(message), headers={"received_at": now_ns()}),
                    routing_key="",
                )
        assert await node.receive() == body
        assert await node.nothing_within(0.5)
    await eventually_stored(db, task_id, {100: 1})


async def test_a_candidate_arrives_while_shares_wait_in_their_queue(
    backends: Backends, db: asyncpg.Pool
) -> None:
    """Shares pile up with no consumer on their queue; a candidate still reaches the node.

    Control: a solution the node waits for that must take the ordinary lane (its
    job predates proof targets) does not arrive until the share consumer starts.
    """
    with private_vhost(f"wspool_lane_{uuid.uuid4().hex[:8]}") as vhost:
        if not vhost:
            pytest.skip("needs rabbitmqctl for a private vhost")
        url = f"{RABBITMQ_SERVER}/{vhost}"
        consumer = ProcessSolutionWorkerSettings(
            **backends.settings(rabbitmq_url=url, port=free_port())
        )
        # Candidates consumed, shares not: their queue only fills.
        candidates_only = create_consumer_app(
            consumer,
            Pipeline(CANDIDATE.queue, SolutionMessage, CANDIDATES, overrides=CANDIDATE_LIMITS),
        )
        jobs = create_job_app(
            ProcessJobWorkerSettings(**backends.settings(rabbitmq_url=url, port=free_port()))
        )
        node_settings = NodeServerSettings(**backends.settings(**server_ports(), rabbitmq_url=url))
        worker_settings = WorkerServerSettings(
            **backends.settings(
                **server_ports(), rabbitmq_url=url, server_instance=f"lane-{uuid.uuid4().hex[:8]}"
            )
        )
        legacy, height = clients.next_height(), clients.next_height()
        # A job stored before jobs had a proof target: its solutions take the ordinary lane.
        await db.execute(
            "INSERT INTO job (block_height, epoch_challenge, task_id, challenge_digest) "
            "VALUES ($1, $2, $3, $4)",
            legacy,
            orjson.dumps(clients.challenge(legacy)).decode(),
            uuid.uuid4(),
            challenge_digest(clients.challenge(legacy)),
        )
        control, candidate = clients.solution_body(), clients.solution_body()
        async with (
            serving(jobs, free_port()),
            serving(candidates_only, free_port()),
            serving_server(node_settings, create_node_app(node_settings)) as node_http,
            serving_server(worker_settings, create_worker_app(worker_settings)) as worker_http,
        ):
            await wait_ready(node_http, worker_http)
            node_url, worker_url = (
                f"ws://127.0.0.1:{node_settings.port}/",
                (f"ws://127.0.0.1:{worker_settings.port}/"),
            )
            async with (
                clients.worker_client(worker_url) as worker,
                clients.node_client(node_url) as node,
            ):
                legacy_task = await clients.job_sent(node, worker, legacy)
                task_id = await clients.job_sent(node, worker, height, proof_target=100)
                for _ in range(50):
                    await worker.send(clients.solution(task_id, target=10))
                await worker.send(clients.solution(legacy_task, target=1000, body=control))
                await worker.send(clients.solution(task_id, target=100, body=candidate))
                assert await node.receive() == candidate
                assert await node.nothing_within(0.5)  # the control waits with the shares
                async with await aio_pika.connect(url) as connection:
                    channel = await connection.channel()
                    queue = await channel.declare_queue(SOLUTION.queue, passive=True)
                    assert queue.declaration_result.message_count > 0
                assert await stored(db, task_id) == {100: 1}
                assert await stored(db, legacy_task) == {}
                assert (await lanes(worker_http)).get("unknown", 0) >= 1
                # Now the shares' consumer: everything waiting is stored, the control delivered.
                full = create_solution_app(
                    ProcessSolutionWorkerSettings(
                        **backends.settings(rabbitmq_url=url, port=free_port())
                    )
                )
                async with serving(full, free_port()):
                    assert await node.receive(timeout=15) == control
                    await eventually_stored(db, task_id, {10: 50, 100: 1})
                    await eventually_stored(db, legacy_task, {1000: 1})
