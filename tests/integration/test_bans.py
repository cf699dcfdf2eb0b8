"""Per-worker solution limits and bans against the real stack.

Addresses are banned only from loopback blocks of their own (127.0.2x.0/24):
an address ban is stored in Postgres and every worker_server of the session
learns it, so the block of 127.0.0.1 must never be banned.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.support import clients
from tests.support.poll import until
from tests.support.stack import BLOCK_BANS, Stack

BANS = {"ban_min_bad": 5, "ban_bad_ratio": 0.5, "ban_seconds": 600, **BLOCK_BANS}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def errors(worker: clients.Worker, count: int) -> list[tuple[str, str]]:
    """The next `count` error frames (code, detail), skipping job frames."""
    found: list[tuple[str, str]] = []
    while len(found) < count:
        frame = await worker.receive()
        if frame.get("type") == "error":
            found.append((frame["code"], frame["detail"]))
    return found


def nonce(body: dict[str, Any]) -> int:
    return body["partial_solution"]["nonce"]


async def received(node: clients.Client, count: int) -> list[dict[str, Any]]:
    """`count` solutions in nonce order (partitions do not keep the sending order)."""
    return sorted([await node.receive() for _ in range(count)], key=nonce)


@pytest.fixture(scope="module")
async def limited(start_servers) -> AsyncIterator[Stack]:
    # A rate that refills nothing while a test runs: the bucket is the burst.
    limits = {"solutions_per_second": 0.001, "solutions_burst": 4, "max_solutions_per_task": 3}
    async with start_servers(worker=limits) as servers:
        yield servers


async def test_solutions_over_a_limit_are_answered_rate_limited_and_not_published(
    limited: Stack,
) -> None:
    per_second = sample("wspool_solutions_limited_total", limit="per_second")
    per_task = sample("wspool_solutions_limited_total", limit="per_task")
    height = clients.next_height()
    bodies = [clients.solution_body() for _ in range(6)]
    async with clients.worker_and_node(limited) as (greedy, node):
        task_id = await clients.job_sent(node, greedy, height)
        for body in bodies:
            await greedy.send(clients.solution(task_id, body=body))
        answers = await errors(greedy, 3)
        assert await received(node, 3) == sorted(bodies[:3], key=nonce)
        # Same address, another worker: its own limits (positive control).
        async with clients.worker_client(limited.worker_url) as modest:
            await modest.job_for(height)
            await modest.send(clients.solution(task_id, body=(fair := clients.solution_body())))
            assert await node.receive() == fair
        assert await node.nothing_within(0.5), "no limited solution arrives after all"
        newer = clients.next_height()
        await clients.job_sent(node, greedy, newer)  # still connected: gets the next job
    assert answers == [
        ("rate_limited", "per_task: more than 3 solutions for this task"),
        ("rate_limited", "per_second: more than 0.001 solutions per second"),
        ("rate_limited", "per_second: more than 0.001 solutions per second"),
    ]
    assert sample("wspool_solutions_limited_total", limit="per_second") == per_second + 2
    assert sample("wspool_solutions_limited_total", limit="per_task") == per_task + 1


@pytest.fixture(scope="module")
async def banning(start_servers) -> AsyncIterator[Stack]:
    async with start_servers(worker={**BANS, "max_invalid_messages": 100}) as servers:
        yield servers


async def _misbehave(worker: clients.Worker, node: clients.Client) -> list[tuple[str, str]]:
    """One good solution, a duplicate of it and four for unknown tasks: 5 of 6 bad."""
    task_id = await clients.job_sent(node, worker, clients.next_height())
    body = clients.solution_body()
    await worker.send(clients.solution(task_id, body=body))
    assert await node.receive() == body
    await worker.send(clients.solution(task_id, body=body))
    for _ in range(4):
        await worker.send(clients.solution(str(uuid.uuid4())))
    return await errors(worker, 5)


REASON = "banned for 600 s: 83% of 6 solutions bad in 60 s"


async def test_a_worker_sending_mostly_bad_solutions_is_banned_by_identity(
    banning: Stack, db: asyncpg.Pool
) -> None:
    source = "127.0.20.1"
    hello = clients.welcome()
    async with (
        clients.worker_client(banning.worker_url, hello, source=source) as bad,
        clients.node_client(banning.node_url) as node,
    ):
        answers = await _misbehave(bad, node)
        closed = await bad.closed()
    assert [code for code, _ in answers] == ["duplicate_solution"] + ["unknown_task"] * 3 + [
        "banned"
    ]
    assert answers[-1][1] == f"{REASON}; 600 s left"
    assert closed == (1008, REASON)
    async with clients.worker_client(banning.worker_url, hello, source=source) as again:
        [(code, detail)] = await errors(again, 1)
        assert code == "banned" and detail.startswith(f"{REASON}; ")
        assert await again.closed() == (1008, REASON)
    # Another identity from the same address works (positive control).
    async with clients.worker_client(banning.worker_url, source=source) as neighbour:
        assert "task_id" in await neighbour.receive()
    row = await db.fetchrow(
        "SELECT reason, banned_until > now() + interval '9 minutes' AS long FROM worker_ban "
        "WHERE kind = 'identity' AND key = $1",
        hello["hardware_id"],
    )
    assert dict(row) == {"reason": REASON, "long": True}
    # Rows are written in batches: wait for them, then count.
    count_rows = "SELECT count(*) FROM worker WHERE hardware_id = $1"
    rows = await until(lambda: db.fetchval(count_rows, hello["hardware_id"]))
    assert rows == 1, "the first connection's row; the refused reconnect gets none"


@pytest.mark.parametrize("mode", ["dry_run", "enforce"])
async def test_dry_run_logs_and_counts_what_enforce_bans(
    start_servers, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = sample("wspool_bans_total", key="identity", mode=mode)
    settings = {**BANS, "max_invalid_messages": 100, "ban_mode": mode}
    async with (
        start_servers(worker=settings) as servers,
        clients.worker_client(servers.worker_url, source="127.0.21.1") as worker,
        clients.node_client(servers.node_url) as node,
    ):
        codes = [code for code, _ in await _misbehave(worker, node)]
        if mode == "dry_run":  # still served: its next solution is published
            task_id = await clients.job_sent(node, worker, clients.next_height())
            await worker.send(clients.solution(task_id, body=(body := clients.solution_body())))
            assert await node.receive() == body
        else:
            assert (await worker.closed())[0] == 1008
    assert codes[-1] == ("unknown_task" if mode == "dry_run" else "banned")
    assert sample("wspool_bans_total", key="identity", mode=mode) == before + 1
    event = "would_ban" if mode == "dry_run" else "banned"
    assert [r.reason for r in caplog.records if r.getMessage() == event] == [REASON]


async def _failed_welcomes(url: str, source: str, count: int) -> None:
    for _ in range(count):
        async with clients.connect(url, source) as ws:
            worker = clients.Worker(ws)
            await worker.send(b"[]")
            assert (await worker.closed())[0] == 3000


@contextlib.asynccontextmanager
async def _welcomed(url: str, source: str) -> AsyncIterator[clients.Worker]:
    async with clients.worker_client(url, source=source) as worker:
        assert "task_id" in await worker.receive()
        yield worker


async def test_an_address_failing_its_welcomes_is_refused_429_on_every_instance(
    start_servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    banned, busy = "127.0.22.1", "127.0.23.1"
    settings = {**BANS, "ban_address_min_bad": 5, "ban_refresh_seconds": 0.1}
    async with start_servers(worker=settings) as servers:
        await _failed_welcomes(servers.worker_url, banned, 5)
        status, body, retry_after = await clients.handshake_answer(servers.worker_url, banned)
        # An address whose welcomes mostly succeed is never banned (a NAT farm).
        for _ in range(10):
            async with _welcomed(servers.worker_url, busy):
                pass
        await _failed_welcomes(servers.worker_url, busy, 5)
        async with _welcomed(servers.worker_url, busy):
            pass
        async with start_servers(worker={"ban_refresh_seconds": 0.1}) as other:
            await until(
                lambda: clients.handshake_answer(other.worker_url, banned),
                lambda refusal: refusal[0] == 429,
                timeout=20,
            )
    assert (status, retry_after) == (429, "600")
    assert body == {
        "error": "banned",
        "detail": "banned for 600 s: 100% of 5 frames bad in 60 s",
    }


async def test_a_banned_identity_is_refused_by_every_instance(
    banning: Stack, start_servers
) -> None:
    hello = clients.welcome()
    async with (
        clients.worker_client(banning.worker_url, hello, source="127.0.24.1") as bad,
        clients.node_client(banning.node_url) as node,
    ):
        await _misbehave(bad, node)
    async with start_servers() as other:
        # From the block the offence came from: hardware_id is the worker's own claim.
        async with clients.worker_client(other.worker_url, hello, source="127.0.24.2") as again:
            [(code, _)] = await errors(again, 1)
            assert (code, await again.closed()) == ("banned", (1008, REASON))
        async with _welcomed(other.worker_url, "127.0.24.1"):
            pass  # the address is not banned, another identity from it works
