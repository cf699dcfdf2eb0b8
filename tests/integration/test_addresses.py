"""Addresses judged by what the server saw: their /24 (IPv4) block, across identities.

Each test sends from loopback blocks of its own (127.0.N.x, N >= 40): an
address ban is stored in Postgres and every worker_server of the session
learns it, so the block of 127.0.0.1 must never be banned.
"""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg
import pytest

from tests.support import clients
from tests.support.stack import BLOCK_BANS

NO_CLOSE_LIMIT = {"max_invalid_messages": 1000, **BLOCK_BANS}


@pytest.fixture(scope="module", autouse=True)
async def current_job(start_servers) -> None:
    """A job in the job table, so that a welcomed worker is sent one at once."""
    async with start_servers() as servers, clients.worker_and_node(servers) as (worker, node):
        await clients.job_sent(node, worker, clients.next_height())


async def _served(url: str, source: str) -> None:
    async with clients.worker_client(url, source=source) as worker:
        assert "task_id" in await worker.receive()


async def _error_codes(worker: clients.Worker, count: int) -> list[str]:
    """The codes of the next `count` error frames, skipping job frames."""
    codes: list[str] = []
    while len(codes) < count:
        if (frame := await worker.receive()).get("type") == "error":
            codes.append(frame["code"])
    return codes


async def test_connections_that_end_before_their_welcome_are_no_offence(start_servers) -> None:
    source = "127.0.40.1"
    async with start_servers(worker={"welcome_timeout_seconds": 0.2, **BLOCK_BANS}) as servers:
        for _ in range(25):  # a prover that crashes on start, again and again
            async with clients.connect(servers.worker_url, source):
                pass
        for _ in range(5):  # or one that never gets to its welcome
            async with clients.connect(servers.worker_url, source) as ws:
                assert (await clients.Worker(ws).closed())[0] == 3000
        answer = await clients.handshake_answer(servers.worker_url, source)
        await _served(servers.worker_url, source)
    assert answer[0] == 400, f"not refused: {answer}"


async def test_identities_made_up_to_spread_bad_solutions_get_their_block_banned(
    start_servers,
) -> None:
    source = "127.0.41.1"
    made_up = [str(uuid.uuid4()) for _ in range(19)]
    sent = 0
    async with start_servers(worker=NO_CLOSE_LIMIT) as servers:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            for _ in range(30):  # each identity stays under the 20 bad that ban it
                async with clients.worker_client(servers.worker_url, source=source) as worker:
                    for task_id in made_up:
                        await worker.send(clients.solution(task_id))
                        sent += 1
                    assert await _error_codes(worker, len(made_up)) == ["unknown_task"] * 19
        status, body, retry_after = await clients.handshake_answer(servers.worker_url, "127.0.41.9")
        await _served(servers.worker_url, "127.0.42.1")  # another block (control)
    assert refused.value.status == 429 and sent < 570
    assert (status, retry_after, body["error"]) == (429, "600", "banned")
    assert (
        body["detail"].startswith("banned for 600 s: ") and "frames bad in 60 s" in body["detail"]
    )


async def test_one_broken_rig_among_good_ones_never_bans_their_block(start_servers) -> None:
    source = "127.0.43.1"
    async with (
        start_servers(worker=NO_CLOSE_LIMIT) as servers,
        clients.node_client(servers.node_url) as node,
        clients.worker_client(servers.worker_url, source=source) as first,
    ):
        task_id = await clients.job_sent(node, first, clients.next_height())
        for _ in range(12):  # good rigs: a welcome and a few good solutions each
            async with clients.worker_client(servers.worker_url, source=source) as good:
                assert "task_id" in await good.receive()
                for _ in range(3):
                    await good.send(clients.solution(task_id))
                    await node.receive()
        async with clients.worker_client(servers.worker_url, source=source) as broken:
            for _ in range(20):
                await broken.send(clients.solution(str(uuid.uuid4())))
            assert (await broken.closed())[0] == 1008, "the broken rig itself is banned"
        await _served(servers.worker_url, source)


async def test_address_bans_stored_before_start_are_known_at_the_first_handshake(
    start_servers, db: asyncpg.Pool
) -> None:
    await db.execute(
        "INSERT INTO worker_ban (kind, key, banned_until, reason, server_instance) "
        "VALUES ('ip', '127.0.44.0/24', now() + interval '10 minutes', 'stored', 'elsewhere')"
    )
    async with start_servers(worker={"ban_refresh_seconds": 3600}) as servers:
        status, body, _ = await clients.handshake_answer(servers.worker_url, "127.0.44.7")
        await _served(servers.worker_url, "127.0.45.1")  # control
    assert (status, body) == (429, {"error": "banned", "detail": "stored"})


async def test_connection_caps_count_a_whole_block(start_servers) -> None:
    async with start_servers(worker={"max_connections_per_ip": 2}) as servers:
        url = servers.worker_url
        async with clients.connect(url, "127.0.46.1"), clients.connect(url, "127.0.46.2"):
            status, body, _ = await clients.handshake_answer(url, "127.0.46.3")
            await _served(url, "127.0.47.1")  # control: another block
    assert (status, body["reason"]) == (503, "per_ip")


async def test_handshakes_over_a_blocks_rate_are_refused_429_with_a_short_retry(
    start_servers,
) -> None:
    limits = {"handshakes_per_second": 0.01, "handshake_burst": 3}
    async with start_servers(worker=limits) as servers:
        for host in range(1, 4):
            await _served(servers.worker_url, f"127.0.48.{host}")
        status, body, retry_after = await clients.handshake_answer(servers.worker_url, "127.0.48.9")
        await _served(servers.worker_url, "127.0.49.1")  # control: another block
    assert (status, body["error"], body["reason"]) == (429, "rate_limited", "handshake_rate")
    assert 1 <= int(retry_after or 0) <= 5
