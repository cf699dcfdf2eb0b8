"""The cluster as every instance's heartbeat shows it, from any node_server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from node_server.cluster import merged_latency
from shared.runtime.instances import STALE_AFTER_SECONDS
from tests.support import clients
from tests.support.http import call
from tests.support.poll import until
from tests.support.stack import Stack, StartServers


async def until_shown(stack: Stack, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The dashboard document once `condition` holds for it (bounded)."""

    async def shown() -> dict[str, Any] | None:
        status, document = await call("GET", f"{stack.node_http}/api/dashboard")
        assert status == 200
        return document if condition(document) else None

    return await until(shown, timeout=20.0)


def instance(document: dict[str, Any], role: str, name: str) -> dict[str, Any] | None:
    found = [i for i in document["cluster"]["instances"] if (i["role"], i["name"]) == (role, name)]
    return found[0] if found else None


async def test_one_node_server_sees_every_instance_and_their_connections(
    start_servers: StartServers,
) -> None:
    b_instance = f"cluster-{uuid.uuid4().hex[:6]}"
    async with start_servers() as a, start_servers(worker={"server_instance": b_instance}) as b:
        b_port = b.node_address.rsplit(":", 1)[1]
        document = await until_shown(
            a, lambda d: any(i["name"].endswith(f":{b_port}") for i in d["cluster"]["instances"])
        )
        roles = {i["role"] for i in document["cluster"]["instances"]}
        assert roles >= {"node_server", "worker_server", "process_job_worker"}
        async with (
            clients.worker_client(b.worker_url, clients.welcome("cluster-1")),
            clients.worker_client(b.worker_url, clients.welcome("cluster-2")),
            clients.node_client(b.node_url),
        ):
            # Counted on B, seen from A: through B's heartbeat, not A's own sockets.
            seen = await until_shown(
                a,
                lambda d: (instance(d, "worker_server", b_instance) or {}).get("connections") == 2,
            )
            assert seen["stats"]["nodes"]["connected"] >= 1
            assert seen["stats"]["nodes"]["connected_here"] == 0  # the control: none on A


async def test_a_silent_instance_is_stale_and_a_stopped_one_leaves(
    start_servers: StartServers, db: asyncpg.Pool
) -> None:
    name = f"silent-{uuid.uuid4().hex[:6]}"
    async with start_servers() as a:
        await db.execute(
            "INSERT INTO instance (role, name, version, started_at, heartbeat_at, ready, stats) "
            "VALUES ('worker_server', $1, 'x', now(), now() - make_interval(secs => $2), "
            "true, '{\"connections\": 7}')",
            name,
            STALE_AFTER_SECONDS + 5,
        )
        document = await until_shown(a, lambda d: instance(d, "worker_server", name) is not None)
        silent = instance(document, "worker_server", name)
        assert silent is not None and silent["stale"] is True
        live = [i for i in document["cluster"]["instances"] if not i["stale"]]
        assert live, "the control: the running instances are not stale"
        # Its 7 connections are history: totals count live instances only.
        live_workers = sum(i["connections"] for i in live if i["role"] == "worker_server")
        assert document["cluster"]["connections"].get("worker_server", 0) == live_workers
        await db.execute("UPDATE instance SET stopped_at = now() WHERE name = $1", name)
        await until_shown(a, lambda d: instance(d, "worker_server", name) is None)


def test_latency_histograms_of_instances_add_up() -> None:
    rows = [
        {
            "role": "node_server",
            "stats": {"latency_buckets": [["0.01", 0], ["0.1", 10], ["+Inf", 10]]},
        },
        {
            "role": "node_server",
            "stats": {"latency_buckets": [["0.01", 10], ["0.1", 10], ["+Inf", 10]]},
        },
        {"role": "worker_server", "stats": {"latency_buckets": [["0.01", 99], ["+Inf", 99]]}},
    ]
    merged = merged_latency(rows, "node_server")
    assert merged.count == 20
    assert merged.p50 == 0.01  # half the observations are under 10 ms, from the second instance
    assert merged_latency(rows, "process_job_worker").count == 0
