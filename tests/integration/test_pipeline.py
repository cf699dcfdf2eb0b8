"""The whole data path through real sockets, RabbitMQ, Postgres and Tansu, in both fan-out modes."""

from __future__ import annotations

import uuid

import asyncpg
import orjson

from shared.metrics import DEDUP_HITS
from tests.support import clients
from tests.support.poll import until
from tests.support.stack import Stack, StartServers, wait_ready


async def test_job_reaches_worker_as_task_id_and_challenge_only(stack: Stack) -> None:
    height = clients.next_height()
    async with clients.worker_and_node(stack) as (worker, node):
        await node.send(clients.job(height))
        frame = await worker.job_for(height)
    assert set(frame) == {"task_id", "epoch_challenge"}
    assert frame["epoch_challenge"] == clients.challenge(height)
    assert uuid.UUID(frame["task_id"])


async def test_solution_reaches_node_exactly_as_the_worker_sent_it(
    stack: Stack, db: asyncpg.Pool
) -> None:
    height = clients.next_height()
    body = clients.solution_body()
    body["extra"] = {"nested": [1, "two", None, 3.25]}
    async with clients.worker_and_node(stack) as (worker, node):
        task_id = await clients.job_sent(node, worker, height, proof_target=100)
        await worker.send(clients.solution(task_id, target=100, body=body))
        assert await node.receive() == body
        assert await node.nothing_within(0.3)
    row = await db.fetchrow("SELECT * FROM solution WHERE task_id = $1", uuid.UUID(task_id))
    assert orjson.loads(row["solution"]) == body
    assert row["nonce"] == str(body["partial_solution"]["nonce"])
    assert row["hardware_id"].startswith("gpu-") and row["caption"] == "rig-7"
    assert row["broadcast_at"] is not None


async def test_solutions_for_other_heights_or_lower_targets_are_not_delivered(
    stack: Stack,
) -> None:
    waited, other = clients.next_height(), clients.next_height()
    async with clients.worker_and_nodes(stack, 2) as (worker, [node, other_node]):
        await node.send(clients.job(waited, proof_target=1000))
        waited_task = (await worker.job_for(waited))["task_id"]
        await other_node.send(clients.job(other, proof_target=1))
        other_task = (await worker.job_for(other))["task_id"]
        await worker.send(clients.solution(waited_task, target=999))  # below the node's target
        await worker.send(clients.solution(other_task, target=10**6))  # a height it never sent
        good = clients.solution_body()
        await worker.send(clients.solution(waited_task, target=1000, body=good))
        assert await node.receive() == good
        assert await node.nothing_within(0.5)
        # the other node did wait for `other`, and gets that one only
        assert (await other_node.receive())["partial_solution"]


async def test_expired_wait_delivers_nothing(start_servers: StartServers) -> None:
    # A wait shorter than any trip through the pipeline: over before a solution can arrive.
    expiring = start_servers(node={"solution_wait_time_seconds": 1e-9}, ready=False)
    async with expiring as servers, start_servers(ready=False) as usual:
        await wait_ready(servers.node_http, servers.worker_http, usual.node_http, usual.worker_http)
        height, body = clients.next_height(), clients.solution_body()
        async with (
            clients.worker_client(servers.worker_url) as worker,
            clients.node_client(servers.node_url) as node,
            clients.node_client(usual.node_url) as control,
        ):
            # The control: the same job on a node_server with the usual wait gets the
            # solution (live, or recovered if it was found before this job was confirmed).
            await control.send(clients.job(height))
            task_id = await clients.job_sent(node, worker, height)
            await worker.send(clients.solution(task_id, body=body))
            assert await control.receive() == body
            assert await node.nothing_within(0.5)


async def test_same_height_from_two_nodes_is_one_task(stack: Stack, db: asyncpg.Pool) -> None:
    height = clients.next_height()
    async with clients.worker_and_nodes(stack, 2) as (worker, [first, second]):
        await first.send(clients.job(height, proof_target=100))
        await second.send(clients.job(height, proof_target=100))
        frame = await worker.job_for(height)
        assert await worker.nothing_within(0.5), "the second job for a height is not sent"
        body = clients.solution_body()
        await worker.send(clients.solution(frame["task_id"], target=100, body=body))
        assert await first.receive() == body
        assert await second.receive() == body
    rows = await db.fetch("SELECT task_id FROM job WHERE block_height = $1", height)
    assert [str(r["task_id"]) for r in rows] == [frame["task_id"]]


async def test_duplicate_solution_is_stored_and_delivered_once(
    stack: Stack, db: asyncpg.Pool
) -> None:
    height = clients.next_height()
    body = clients.solution_body()
    async with clients.worker_and_node(stack) as (worker, node):
        task_id = await clients.job_sent(node, worker, height)
        await worker.send(clients.solution(task_id, body=body))
        await worker.send(clients.solution(task_id, body=body))
        assert await node.receive() == body
        assert await node.nothing_within(0.7)
        refused = await worker.receive()
        assert (refused["code"], refused["detail"]) == (
            "duplicate_solution",
            f"nonce {body['partial_solution']['nonce']} already sent for this task",
        )
        # From another connection it is published, and Postgres keeps it once.
        duplicates = DEDUP_HITS.labels(kind="solution")
        before = duplicates._value.get()
        async with clients.worker_client(stack.worker_url) as other:
            await other.job_for(height)
            await other.send(clients.solution(task_id, body=body))
            # The control: it reached persist, which found it stored already.
            await until(lambda: duplicates._value.get() > before)
            assert await node.nothing_within(0.7)
    count = await db.fetchval(
        "SELECT count(*) FROM solution WHERE task_id = $1", uuid.UUID(task_id)
    )
    assert count == 1


async def test_worker_joining_later_gets_the_latest_job_at_once(stack: Stack) -> None:
    height = clients.next_height()
    async with clients.worker_and_node(stack) as (early, node):
        await node.send(clients.job(height))
        first = await early.job_for(height)
    async with clients.worker_client(stack.worker_url) as late:
        assert await late.receive(2.0) == first


async def test_older_or_equal_heights_never_reach_a_worker(stack: Stack) -> None:
    height = clients.next_height()
    async with clients.worker_and_node(stack) as (worker, node):
        await node.send(clients.job(height))
        await worker.job_for(height)
        await node.send(clients.job(height - 1))  # older: stored, not sent to this worker
        await node.send(clients.job(height, proof_target=1))  # equal: deduplicated
        assert await worker.nothing_within(0.7)
        newer = clients.next_height()
        await node.send(clients.job(newer))
        assert (await worker.receive())["epoch_challenge"] == clients.challenge(newer)
