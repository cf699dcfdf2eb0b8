"""A node that reconnects and re-sends its job gets what it missed, once; never another
challenge's solutions. Real sockets, RabbitMQ, Postgres and Tansu."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
import pytest

from shared.metrics import RECOVERED
from shared.routes import JOB
from tests.support import clients, raw_ws
from tests.support.poll import until
from tests.support.stack import Backends, Stack, StartServers


def nonce(body: dict[str, Any]) -> str:
    return str(body["partial_solution"]["nonce"])


async def stored(db: asyncpg.Pool, bodies: list[dict[str, Any]]) -> None:
    """Wait until every solution is stored and broadcast."""
    nonces = [nonce(body) for body in bodies]
    query = "SELECT count(*) FROM solution WHERE nonce = ANY($1) AND broadcast_at IS NOT NULL"
    await until(lambda: db.fetchval(query, nonces), lambda count: count == len(nonces))


async def solutions_received(node: clients.Client, count: int) -> list[dict[str, Any]]:
    return [await node.receive() for _ in range(count)]


def by_nonce(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(bodies, key=nonce)


def recovered(source: str) -> float:
    return RECOVERED.labels(source=source)._value.get()


@contextlib.asynccontextmanager
async def missed_while_away(
    servers: Stack, db: asyncpg.Pool, height: int
) -> AsyncIterator[tuple[clients.Worker, str, list[dict[str, Any]]]]:
    """A node sends a job and leaves; a worker then finds three solutions at or above
    its target, one below it, and one for another height. Yields the worker, the task
    and the three the node should recover."""
    other_height = clients.next_height()
    async with clients.worker_client(servers.worker_url) as worker:
        async with clients.node_client(servers.node_url) as node:
            task_id = await clients.job_sent(node, worker, height, proof_target=100)
        missed = [clients.solution_body() for _ in range(3)]
        for body in missed:
            await worker.send(clients.solution(task_id, target=150, body=body))
        below = clients.solution_body()
        await worker.send(clients.solution(task_id, target=99, body=below))
        async with clients.node_client(servers.node_url) as other_node:
            other_task = await clients.job_sent(other_node, worker, other_height, proof_target=1)
        elsewhere = clients.solution_body()
        await worker.send(clients.solution(other_task, target=500, body=elsewhere))
        await stored(db, [*missed, below, elsewhere])
        yield worker, task_id, missed


@pytest.mark.parametrize("instance", ["same", "another"])
async def test_a_reconnecting_node_gets_what_it_missed_once_then_live_ones(
    start_servers: StartServers, db: asyncpg.Pool, instance: str
) -> None:
    height = clients.next_height()
    async with start_servers() as first, start_servers() as second:
        reconnect_to = first if instance == "same" else second
        async with missed_while_away(first, db, height) as (worker, task_id, missed):
            async with clients.node_client(reconnect_to.node_url) as node:
                await node.send(clients.job(height, proof_target=100))
                assert by_nonce(await solutions_received(node, 3)) == by_nonce(missed)
                # Not the one below target, not the other height's, and no repeats.
                assert await node.nothing_within(0.5)
                await node.send(clients.job(height, proof_target=100))  # re-sent on the same socket
                assert await node.nothing_within(0.5), "each solution reaches a node once"
                live = clients.solution_body()
                await worker.send(clients.solution(task_id, target=150, body=live))
                assert await node.receive() == live


async def test_after_a_restart_recovery_comes_from_postgres(
    start_servers: StartServers, db: asyncpg.Pool
) -> None:
    height = clients.next_height()
    async with start_servers() as servers:
        async with missed_while_away(servers, db, height) as (_worker, _task, missed):
            before = recovered("database")
            # Without a window: a fresh instance's fan-out may still re-read the topic from
            # its start (see OutageWatch), and then memory would answer first.
            fresh = start_servers(node={"recovery_window_per_height": 0})
            async with fresh as restarted, clients.node_client(restarted.node_url) as node:
                await node.send(clients.job(height, proof_target=100))
                assert by_nonce(await solutions_received(node, 3)) == by_nonce(missed)
            assert recovered("database") - before == 3


async def test_solutions_older_than_the_wait_time_are_not_recovered(
    start_servers: StartServers, db: asyncpg.Pool
) -> None:
    """From Postgres, with one row made older than the wait instead of waiting it out;
    the memory window's own age limit is tested in tests/unit/test_recent_solutions.py."""
    height, wait_seconds = clients.next_height(), 60
    settings = {"solution_wait_time_seconds": wait_seconds, "recovery_window_per_height": 0}
    async with start_servers(node=settings) as servers:
        async with clients.worker_client(servers.worker_url) as worker:
            async with clients.node_client(servers.node_url) as node:
                task_id = await clients.job_sent(node, worker, height, proof_target=1)
            old, fresh = clients.solution_body(), clients.solution_body()
            await worker.send(clients.solution(task_id, body=old))
            await worker.send(clients.solution(task_id, body=fresh))
            await stored(db, [old, fresh])
            await db.execute(
                "UPDATE solution SET created_at = created_at - make_interval(secs => $3)"
                " WHERE task_id = $1 AND nonce = $2",
                uuid.UUID(task_id),
                nonce(old),
                wait_seconds + 1,
            )
            async with clients.node_client(servers.node_url) as node:
                await node.send(clients.job(height, proof_target=1))
                assert await node.receive() == fresh
                assert await node.nothing_within(0.5)


def forked(height: int) -> dict[str, Any]:
    return {**clients.challenge(height), "epoch_block_hash": f"fork-{height}"}


async def test_a_job_whose_height_another_challenge_holds_is_told_and_gets_nothing(
    stack: Stack,
) -> None:
    height = clients.next_height()
    async with clients.worker_and_nodes(stack, 2) as (worker, [holder, forked_node]):
        task_id = await clients.job_sent(holder, worker, height, proof_target=1)
        await forked_node.send(clients.job(height, proof_target=1, epoch_challenge=forked(height)))
        error = await forked_node.receive()
        assert error == {
            "type": "error",
            "code": "conflicting_job",
            "detail": f"block height {height} is held by another epoch_challenge",
        }
        body = clients.solution_body()
        await worker.send(clients.solution(task_id, body=body))
        assert await holder.receive() == body
        assert await forked_node.nothing_within(0.5)


async def test_two_challenges_racing_for_a_height_never_cross(stack: Stack) -> None:
    height = clients.next_height()
    async with clients.worker_and_nodes(stack, 2) as (worker, [a, b]):
        jobs = {
            "a": clients.job(height, proof_target=1),
            "b": clients.job(height, proof_target=1, epoch_challenge=forked(height)),
        }
        # Both sent at once: both may pass the lookup, one wins the height.
        await asyncio.gather(a.send(jobs["a"]), b.send(jobs["b"]))
        frame = await worker.job_for(height)
        winner, loser = (
            (a, b) if frame["epoch_challenge"] == jobs["a"]["epoch_challenge"] else (b, a)
        )
        body = clients.solution_body()
        await worker.send(clients.solution(frame["task_id"], body=body))
        assert await winner.receive() == body
        with contextlib.suppress(TimeoutError):
            while True:  # the loser may be told conflicting_job, never sent the solution
                assert (await loser.receive(timeout=0.5)).get("type") == "error"


async def test_the_poll_path_filters_by_challenge_like_recovery(stack: Stack) -> None:
    height = clients.next_height()
    base = stack.node_http
    async with (
        aiohttp.ClientSession() as session,
        clients.worker_client(stack.worker_url) as worker,
    ):
        async with session.post(
            f"{base}/api/jobs", json=clients.job(height, proof_target=1)
        ) as reply:
            assert reply.status == 202
            accepted = await reply.json()
        frame = await worker.job_for(height)
        body = clients.solution_body()
        await worker.send(clients.solution(frame["task_id"], body=body))
        async with session.post(
            f"{base}/api/jobs", json=clients.job(height, epoch_challenge=forked(height))
        ) as reply:
            assert reply.status == 409
            assert (await reply.json())["error"] == "conflicting_job"

        async def poll(digest: str) -> list[dict[str, Any]]:
            url = f"{base}/api/jobs/by-height/{height}/solutions?challenge_digest={digest}"
            async with session.get(url) as reply:
                assert reply.status == 200
                return (orjson.loads(await reply.read()))["solutions"]

        found = await until(lambda: poll(accepted["challenge_digest"]))
        assert found == [body]
        assert accepted["poll"].endswith(f"challenge_digest={accepted['challenge_digest']}")
        assert await poll(uuid.uuid4().hex) == [], "another challenge's poll gets nothing"


@contextlib.asynccontextmanager
async def job_copies(backends: Backends) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue of our own on the `job` exchange: a copy of every job node_server publishes."""
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(JOB.exchange)
        yield queue


async def copies_in(queue: aio_pika.abc.AbstractQueue) -> int:
    declared = await queue.channel.declare_queue(queue.name, passive=True)
    return declared.declaration_result.message_count or 0


async def stored_behind_the_fanout(db: asyncpg.Pool, task_id: str, body: dict[str, Any]) -> None:
    """A solution stored as if broadcast, that no fan-out carried: only recovery sends it."""
    await db.execute(
        "INSERT INTO solution (task_id, nonce, hardware_id, caption, solution, solution_target,"
        " broadcast_at) VALUES ($1, $2, 'gpu-elsewhere', 'rig', $3::jsonb, 500, now())",
        uuid.UUID(task_id),
        nonce(body),
        orjson.dumps(body).decode(),
    )


async def test_a_job_re_sent_unchanged_is_published_once_and_recovers_only_what_is_new(
    start_servers: StartServers, db: asyncpg.Pool, backends: Backends
) -> None:
    """Issue #19: one connection sent one job 300 times, and each was published again."""
    height = clients.next_height()
    async with start_servers() as servers, job_copies(backends) as copies:
        async with clients.worker_and_node(servers) as (worker, node):
            task_id = await clients.job_sent(node, worker, height, proof_target=1)
            live = clients.solution_body()
            await worker.send(clients.solution(task_id, body=live))
            assert await node.receive() == live
            for _ in range(100):
                await node.send(clients.job(height, proof_target=1))
            await node.send(b"{}")  # answered after every repeat was handled
            assert (await node.receive())["code"] == "invalid_message", "repeats answer nothing"
            # The positive control: another target at the height is another job.
            await node.send(clients.job(height, proof_target=2))
            assert await until(lambda: copies_in(copies), lambda count: count >= 2) == 2
            missed = clients.solution_body()
            await stored_behind_the_fanout(db, task_id, missed)

            async def resent() -> dict[str, Any] | None:
                await node.send(clients.job(height, proof_target=1))
                with contextlib.suppress(TimeoutError):
                    return await node.receive(timeout=0.3)
                return None

            assert await until(resent) == missed, "a later repeat recovers what is new"
            assert await node.nothing_within(0.5), "and not what this connection had"
        assert await copies_in(copies) == 2


async def stored_many_behind_the_fanout(db: asyncpg.Pool, task_id: str, count: int) -> None:
    """`count` solutions of about 60 KB, oldest first: more than a slow reader's socket
    buffers (a few MB on loopback) and its outbox hold together."""
    bodies = [{**clients.solution_body(), "pad": "x" * 60_000} for _ in range(count)]
    await db.executemany(
        "INSERT INTO solution (task_id, nonce, hardware_id, caption, solution, solution_target,"
        " broadcast_at) VALUES ($1, $2, 'gpu-elsewhere', 'rig', $3::jsonb, 500, now())",
        [(uuid.UUID(task_id), nonce(body), orjson.dumps(body).decode()) for body in bodies],
    )


async def test_recovery_of_more_than_the_outbox_holds_is_bounded_newest_first_and_paced(
    start_servers: StartServers, db: asyncpg.Pool
) -> None:
    """Issue #19: recovery wrote every stored solution at once, and a node whose outbox
    that overflowed was dropped (1008 slow consumer) each time it re-sent its job."""
    height, stored_count, limit = clients.next_height(), 150, 100
    node_settings = {
        "send_queue_size": 4,
        "max_recovered_solutions": limit,
        "recovery_window_per_height": 0,  # from Postgres, whose order is the ids'
    }
    async with start_servers(node=node_settings) as servers:
        async with clients.worker_client(servers.worker_url) as worker:
            async with clients.node_client(servers.node_url) as node:
                task_id = await clients.job_sent(node, worker, height, proof_target=1)
            await stored_many_behind_the_fanout(db, task_id, stored_count)
            newest = await db.fetch(
                "SELECT nonce FROM solution WHERE task_id = $1 ORDER BY id DESC LIMIT $2",
                uuid.UUID(task_id),
                limit,
            )
            reader, writer = await raw_ws.connect(servers.node_address)
            try:
                await raw_ws.send(writer, clients.job(height, proof_target=1))
                recovered = [nonce(await raw_ws.receive(reader)) for _ in range(limit)]
                assert recovered == [row["nonce"] for row in newest], "the newest, newest first"
                live = clients.solution_body()  # still connected, still served
                await worker.send(clients.solution(task_id, target=500, body=live))
                assert await raw_ws.receive(reader) == live
            finally:
                writer.close()
