"""Bans on an identity a worker only declared stay where the offence came from.

Each test sends from loopback addresses in /24 blocks of its own (127.0.N.x,
N >= 30): bans are stored in Postgres and every worker_server of the session
learns them, so the block of 127.0.0.1 must never be banned.
"""

from __future__ import annotations

import hashlib
import hmac

import asyncpg

from tests.support import clients
from tests.support.poll import until
from tests.support.stack import BLOCK_BANS

# Defaults but a quick refresh: 20 bad of at least half in 60 s ban for 600 s.
QUICK = {"ban_refresh_seconds": 0.1, "max_invalid_messages": 100, **BLOCK_BANS}
SECRET = "identity-secret"


async def _banned_by_invalid_frames(url: str, hello: dict[str, object], source: str) -> None:
    """20 invalid frames from `source` claiming `hello`'s identity: banned, closed 1008."""
    async with clients.worker_client(url, hello, source=source) as hostile:
        for _ in range(20):
            await hostile.send(b"[]")
        code, _reason = await hostile.closed()
    assert code == 1008


async def _served(url: str, hello: dict[str, object], source: str) -> None:
    async with clients.worker_client(url, hello, source=source) as worker:
        assert "task_id" in await worker.receive()


async def _refused_banned(url: str, hello: dict[str, object], source: str) -> str:
    async with clients.worker_client(url, hello, source=source) as worker:
        frame = await worker.receive()
        code, reason = await worker.closed()
    assert (frame["code"], code) == ("banned", 1008)
    return reason


async def _stored(db: asyncpg.Pool, hardware_id: object) -> None:
    query = "SELECT count(*) FROM worker_ban WHERE kind = 'identity' AND key = $1"
    await until(lambda: db.fetchval(query, hardware_id))


async def test_a_hostile_worker_claiming_another_ones_id_bans_it_only_from_its_own_block(
    start_servers, db: asyncpg.Pool
) -> None:
    hostile, real = "127.0.30.1", "127.0.31.1"
    hello = clients.welcome("gpu-0")  # an id many rigs share
    async with (
        start_servers(worker=QUICK) as servers,
        start_servers(worker=QUICK) as other,
        clients.node_client(servers.node_url) as node,
        clients.worker_client(servers.worker_url, hello, source=real) as victim,
    ):
        task_id = await clients.job_sent(node, victim, clients.next_height())
        await _banned_by_invalid_frames(servers.worker_url, hello, hostile)
        await _stored(db, hello["hardware_id"])
        # Known to the other instance too: the claim from the hostile block is refused there.
        await until(lambda: _claim_refused(other.worker_url, hello, "127.0.30.2"))
        # The real worker, which sent nothing wrong, is still served...
        await victim.send(clients.solution(task_id, body=(body := clients.solution_body())))
        assert await node.receive() == body
        # ...and welcome on reconnect, on either instance.
        await _served(servers.worker_url, hello, real)
        await _served(other.worker_url, hello, real)
        reason = await _refused_banned(servers.worker_url, hello, hostile)  # control
    assert reason.startswith("banned for 600 s: ")


async def _claim_refused(url: str, hello: dict[str, object], source: str) -> bool:
    async with clients.worker_client(url, hello, source=source) as worker:
        frame = await worker.receive()
    return frame.get("code") == "banned"


async def test_an_identity_found_banned_later_is_closed_when_that_is_learnt(
    start_servers, db: asyncpg.Pool
) -> None:
    source = "127.0.32.1"
    hello = clients.welcome()
    async with (
        start_servers(worker=QUICK) as servers,
        start_servers(worker=QUICK) as other,
        clients.worker_client(other.worker_url, hello, source=source) as idle,
        clients.worker_client(other.worker_url, source=source) as neighbour,
    ):
        assert "task_id" in await idle.receive()
        assert "task_id" in await neighbour.receive()
        await _banned_by_invalid_frames(servers.worker_url, hello, source)
        # Sending nothing, the idle connection is told and closed once its instance learns it.
        frame = await idle.receive(timeout=10)
        code, reason = await idle.closed()
        assert await neighbour.nothing_within(0.3), "another identity stays (control)"
    assert (frame["code"], code) == ("banned", 1008)
    assert reason.startswith("banned for 600 s: ")


def token(hardware_id: str) -> str:
    return hmac.new(SECRET.encode(), hardware_id.encode(), hashlib.sha256).hexdigest()


async def test_a_proven_identity_is_banned_everywhere_and_a_wrong_proof_is_an_invalid_welcome(
    start_servers, db: asyncpg.Pool
) -> None:
    hello = clients.welcome()
    proof = f"?worker_token={token(str(hello['hardware_id']))}"
    async with start_servers(worker={**QUICK, "worker_token_secret": SECRET}) as servers:
        url = servers.worker_url
        async with clients.worker_client(url + proof, clients.welcome()) as wrong:
            assert await wrong.closed() == (
                3000,
                "invalid welcome: worker_token does not prove hardware_id",
            )
        await _banned_by_invalid_frames(url + proof, hello, "127.0.33.1")
        await _stored(db, hello["hardware_id"])
        # From another block, with its proof or without: the same worker, banned.
        await _refused_banned(url + proof, hello, "127.0.34.1")
        await _refused_banned(url, hello, "127.0.34.1")
        await _served(url, clients.welcome(), "127.0.34.1")  # control: that block is fine
    row = await db.fetchrow(
        "SELECT scope FROM worker_ban WHERE kind = 'identity' AND key = $1", hello["hardware_id"]
    )
    assert row["scope"] == ""
