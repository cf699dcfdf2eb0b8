"""GET /api/fleet: find a worker by any of its names, with its work and its disconnects."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from tests.support import clients
from tests.support.http import call
from tests.support.poll import until
from tests.support.stack import Stack, servers_with

INVALID_FRAMES = 21  # one over max_invalid_messages: the server closes with 1008


# Bans off: the invalid frames below are for a 1008 close, not for a ban.
servers = servers_with(worker={"ban_mode": "off"})


async def fleet(stack: Stack, **query: Any) -> list[dict[str, Any]]:
    status, body = await call("GET", f"{stack.node_http}/api/fleet?{urlencode(query)}")
    assert status == 200, body
    assert body["q"] == str(query.get("q", "")).strip()
    return body["items"]


async def item(stack: Stack, hardware_id: str, **query: Any) -> dict[str, Any] | None:
    found = [w for w in await fleet(stack, **query) if w["hardware_id"] == hardware_id]
    return found[0] if found else None


async def test_fleet_finds_a_worker_by_each_field_with_solutions_and_disconnects(
    servers: Stack,
) -> None:
    token = uuid.uuid4().hex[:10]
    hardware_id = f"fleet-{token}"
    hello = clients.welcome(hardware_id, address=f"aleo1addr{token}", caption=f"Rig-{token}")
    other = f"other-{uuid.uuid4().hex[:10]}"
    async with clients.worker_client(servers.worker_url, hello) as first:
        await until(lambda: item(servers, hardware_id, q=hardware_id))
        for _ in range(INVALID_FRAMES):
            await first.send(b"{not json")
        assert (await first.closed())[0] == 1008
    async with (
        clients.worker_client(servers.worker_url, hello) as again,
        clients.worker_client(servers.worker_url, clients.welcome(other, caption="elsewhere")),
        clients.node_client(servers.node_url) as node,
    ):
        task_id = await clients.job_sent(node, again, clients.next_height())
        await again.send(clients.solution(task_id))

        async def back_with_its_solution() -> dict[str, Any] | None:
            found = await item(servers, hardware_id, q=token)
            # Rows are written in batches: wait for the first connection's close too.
            ready = (
                found
                and found["connected"]
                and found["solutions_last_hour"] == 1
                and found["recent_disconnects"]
            )
            return found if ready else None

        found = await until(back_with_its_solution)
        assert found["shares_per_minute"] == pytest.approx(1 / 60)
        assert found["last_solution_at"] is not None
        assert found["connected_since"] is not None and found["instance"].startswith("test-")
        assert (found["address"], found["caption"]) == (f"aleo1addr{token}", f"Rig-{token}")
        assert [d["close_code"] for d in found["recent_disconnects"]] == [1008]
        assert found["recent_disconnects"][0]["disconnected_at"] is not None
        # Each field finds it, in any case: hardware id, address, caption, remote IP.
        for text in (hardware_id.upper(), f"ALEO1ADDR{token}", f"rig-{token}"):
            assert await item(servers, hardware_id, q=text) == found
        assert await item(servers, hardware_id, q=f" {found['remote_ip']} ", limit=100)
        # The other worker, connected at the same time, matches none of the token's text...
        assert [w["hardware_id"] for w in await fleet(servers, q=token)] == [hardware_id]
        # ...and is found by its own (a positive control for the line above).
        assert [w["hardware_id"] for w in await fleet(servers, q=other)] == [other]
        assert await item(servers, other, q="") is not None  # empty q: the most recently seen
        assert found["banned_until"] is None


async def test_fleet_shows_a_ban_in_force(servers: Stack, db: asyncpg.Pool) -> None:
    banned, free = f"banned-{uuid.uuid4().hex[:8]}", f"free-{uuid.uuid4().hex[:8]}"
    async with (
        clients.worker_client(servers.worker_url, clients.welcome(banned)),
        clients.worker_client(servers.worker_url, clients.welcome(free)),
    ):
        await until(lambda: item(servers, free, q=free))
        await db.execute(
            "INSERT INTO worker_ban (kind, key, banned_until, reason, server_instance) "
            "VALUES ('identity', $1, now() + interval '10 minutes', 'test', 'test')",
            banned,
        )
        assert (await item(servers, banned, q=banned))["banned_until"] is not None
        assert (await item(servers, free, q=free))["banned_until"] is None  # the control


async def test_fleet_parameters_are_checked(servers: Stack) -> None:
    for query in ("limit=0", "limit=101", "limit=x", f"q={'a' * 256}"):
        status, body = await call("GET", f"{servers.node_http}/api/fleet?{query}")
        assert (status, body["error"]) == (400, "invalid_parameter"), query
    status, body = await call("GET", f"{servers.node_http}/api/fleet?limit=100&q={'a' * 255}")
    assert (status, body["items"]) == (200, [])
