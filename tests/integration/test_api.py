"""node_server's HTTP API against real traffic: read API, REST jobs, errors, tokens."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from node_server.app import create_app
from node_server.settings import NodeServerSettings
from tests.support import clients
from tests.support.http import call
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.stack import Backends, Stack, StartServers, server_ports, serving_server


@pytest.fixture(scope="module")
async def servers(start_servers) -> Stack:
    async with start_servers() as stack:
        yield stack


async def test_stats_count_connected_workers_and_nodes(servers: Stack) -> None:
    hardware = [f"stats-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    async with (
        clients.worker_client(servers.worker_url, clients.welcome(hardware[0])),
        clients.worker_client(servers.worker_url, clients.welcome(hardware[1])),
        clients.node_client(servers.node_url),
    ):

        async def both_listed() -> bool:
            status, page = await call("GET", f"{servers.node_http}/api/workers?connected=true")
            return status == 200 and set(hardware) <= {w["hardware_id"] for w in page["items"]}

        await until(both_listed)
        status, stats = await call("GET", f"{servers.node_http}/api/stats")
    assert status == 200
    assert stats["workers"]["connected"] >= 2
    assert stats["nodes"]["connected_here"] == 1
    assert set(stats["workers"]) == {"connected"}  # workers are on worker_server
    assert set(stats) == {"workers", "nodes", "current_height", "jobs", "solutions"}
    assert set(stats["solutions"]) == {"last_minute", "last_hour"}


async def test_job_solutions_and_worker_stats_after_real_traffic(servers: Stack) -> None:
    height, hardware_id, body = (
        clients.next_height(),
        f"api-{uuid.uuid4().hex[:6]}",
        clients.solution_body(),
    )
    async with (
        clients.worker_client(servers.worker_url, clients.welcome(hardware_id)) as worker,
        clients.node_client(servers.node_url) as node,
    ):
        task_id = await clients.job_sent(node, worker, height, proof_target=10)
        await worker.send(clients.solution(task_id, target=50, body=body))
        assert await node.receive() == body
    base = servers.node_http

    async def counted() -> Any:
        status, found = await call("GET", f"{base}/api/jobs/{task_id}")
        return found if status == 200 and found["solution_count"] == 1 else None

    found = await until(counted)
    assert found["block_height"] == height and found["task_id"] == task_id
    status, page = await call("GET", f"{base}/api/jobs/{task_id}/solutions")
    assert status == 200 and page["next_before"] is None
    assert [s["solution"] for s in page["items"]] == [body]
    assert page["items"][0]["hardware_id"] == hardware_id

    async def worker_stats() -> Any:  # worker rows are written in batches, a moment later
        status, stats = await call("GET", f"{base}/api/workers/{hardware_id}/stats?window=5m")
        return stats if status == 200 and stats["connections"] else None

    stats = await until(worker_stats)
    assert (stats["solutions"], stats["window_seconds"], stats["connections"]) == (1, 300, 1)
    status, latest = await call("GET", f"{base}/api/stats")
    assert latest["current_height"] >= height and latest["solutions"]["last_hour"] >= 1


async def test_jobs_are_paginated_by_block_height(servers: Stack) -> None:
    heights = [clients.next_height() for _ in range(3)]
    async with clients.worker_and_node(servers) as (worker, node):
        for height in heights:
            await node.send(clients.job(height))
        await worker.job_for(heights[-1])
    base = f"{servers.node_http}/api/jobs?limit=2"
    status, first = await call("GET", f"{base}&before={heights[-1] + 1}")
    assert status == 200
    assert [j["block_height"] for j in first["items"]] == [heights[2], heights[1]]
    status, second = await call("GET", f"{base}&before={first['next_before']}")
    assert second["items"][0]["block_height"] == heights[0]


async def test_a_page_never_splits_a_height_with_retired_jobs(
    servers: Stack, db: asyncpg.Pool
) -> None:
    low, high = clients.next_height(), clients.next_height()
    rows = [(low, "retired"), (low, "current"), (high, "current")]
    for height, kind in rows:  # a retired job and its replacement share the height
        await db.execute(
            "INSERT INTO job (block_height, epoch_challenge, task_id, retired_at) "
            "VALUES ($1, $2::jsonb, $3, CASE WHEN $4 THEN now() END)",
            height,
            orjson.dumps({"epoch_number": height, "kind": kind}).decode(),
            uuid.uuid4(),
            kind == "retired",
        )
    base = f"{servers.node_http}/api/jobs?limit=2"
    status, first = await call("GET", f"{base}&before={high + 1}")
    assert status == 200
    assert [j["block_height"] for j in first["items"]] == [high, low, low]
    assert first["next_before"] == low
    status, second = await call("GET", f"{base}&before={low}")
    assert low not in [j["block_height"] for j in second["items"]]


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs?limit=0",
        "/api/jobs?limit=abc",
        "/api/jobs?before=-1",
        "/api/jobs/not-a-uuid",
        "/api/jobs/not-a-uuid/solutions",
        "/api/workers?connected=maybe",
        "/api/workers?before=1.5",
        "/api/workers/gpu-0/stats?window=1y",
        "/api/workers/gpu-0/stats?window=100d",
        "/api/jobs/by-height/x/solutions",
        "/api/jobs/by-height/1/solutions?min_target=-5",
    ],
)
async def test_invalid_parameters_are_400_with_json(servers: Stack, path: str) -> None:
    status, body = await call("GET", f"{servers.node_http}{path}")
    assert status == 400
    assert body["error"] == "invalid_parameter" and body["detail"]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/jobs/{uuid.uuid4()}",
        f"/api/jobs/{uuid.uuid4()}/solutions",
        "/api/workers/never-seen/stats",
        "/api/nothing-here",
    ],
)
async def test_unknown_ids_are_404_with_json(servers: Stack, path: str) -> None:
    status, body = await call("GET", f"{servers.node_http}{path}")
    assert status == 404
    assert body["error"] and body["detail"]


async def test_rest_job_reaches_workers_and_solutions_can_be_polled(servers: Stack) -> None:
    height, body = clients.next_height(), clients.solution_body()
    async with clients.worker_client(servers.worker_url) as worker:
        status, accepted = await call(
            "POST", f"{servers.node_http}/api/jobs", clients.job(height, proof_target=20)
        )
        assert status == 202 and accepted["block_height"] == height
        task_id = (await worker.job_for(height))["task_id"]
        await worker.send(clients.solution(task_id, target=10))  # below the target: not returned
        await worker.send(clients.solution(task_id, target=20, body=body))

    async def polled() -> Any:
        status, found = await call("GET", servers.node_http + accepted["poll"])
        return found if status == 200 and found["solutions"] else None

    found = await until(polled)
    assert found["solutions"] == [body]
    status, later = await call(
        "GET", f"{servers.node_http}{accepted['poll']}&after={found['next_after']}"
    )
    assert status == 200 and later["solutions"] == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "invalid_message"),
        (orjson.dumps({"block_height": 1}), 400, "invalid_message"),
        (orjson.dumps(clients.job(1, proof_target=True)), 400, "invalid_message"),
        (orjson.dumps(clients.job(1, pad="x" * 70000)), 413, "too_large"),
    ],
)
async def test_bad_rest_jobs_are_refused_with_json(
    servers: Stack, body: bytes, status: int, error: str
) -> None:
    answer, decoded = await call("POST", f"{servers.node_http}/api/jobs", body)
    assert (answer, decoded["error"]) == (status, error)


@pytest.mark.parametrize(
    ("challenge", "detail"),
    [
        (b'{"x": 1, "x": 2}', 'epoch_challenge: duplicate key "x"'),
        (b'{"a": [18446744073709551616]}', "epoch_challenge.a.0: integer larger than 64 bits"),
    ],
)
async def test_rest_jobs_that_would_change_are_refused_naming_the_field(
    servers: Stack, challenge: bytes, detail: str
) -> None:
    body = b'{"epoch_challenge": %s, "proof_target": 1, "block_height": 1}' % challenge
    answer, decoded = await call("POST", f"{servers.node_http}/api/jobs", body)
    assert (answer, decoded["error"], decoded["detail"]) == (400, "invalid_message", detail)


async def test_rest_job_is_503_when_rabbitmq_cannot_confirm(backends: Backends) -> None:
    dead_broker = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    settings = NodeServerSettings(**backends.settings(**server_ports(), rabbitmq_url=dead_broker))
    async with serving_server(settings, create_app(settings)) as base:
        status, body = await call("POST", f"{base}/api/jobs", clients.job(clients.next_height()))
    assert status == 503
    assert body == {"error": "unavailable", "detail": "job not accepted: broker unavailable"}


async def test_api_requires_admin_token_when_set(start_servers) -> None:
    async with start_servers(node={"admin_token": "adm1n", "auth_tokens": "n0de"}) as stack:
        base = stack.node_http
        for path in ("/api/stats", "/api/jobs", "/api/workers", "/api/dashboard"):
            status, body = await call("GET", base + path)
            assert (status, body["error"]) == (401, "unauthorized")
            status, _ = await call("GET", base + path, headers={"Authorization": "Bearer adm1n"})
            assert status == 200
        # Never in the URL: it would end up in logs and browser history.
        status, _ = await call("GET", f"{base}/api/stats?token=adm1n")
        assert status == 401
        status, _ = await call("GET", base + "/api/stats", headers={"Authorization": "Bearer n0de"})
        assert status == 401
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/dashboard") as response:  # its data needs the login
                assert response.status == 200 and 'id="login"' in await response.text()
        status, _ = await call("GET", f"{base}/api/openapi.json")
        assert status == 200


async def test_rest_jobs_require_node_token_when_set(start_servers) -> None:
    async with start_servers(node={"admin_token": "adm1n", "auth_tokens": "n0de"}) as stack:
        url, height = f"{stack.node_http}/api/jobs", clients.next_height()
        status, _ = await call("POST", url, clients.job(height), {"Authorization": "Bearer adm1n"})
        assert status == 401
        status, _ = await call("POST", url, clients.job(height), {"Authorization": "Bearer n0de"})
        assert status == 202
        poll = f"{url}/by-height/{height}/solutions"
        assert (await call("GET", poll))[0] == 401
        assert (await call("GET", f"{poll}?token=n0de"))[0] == 200


async def test_api_is_503_with_json_when_postgres_is_down(backends: Backends) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/wspool"
    settings = NodeServerSettings(**backends.settings(**server_ports(), postgres_dsn=nowhere))
    async with serving_server(settings, create_app(settings)) as base:
        status, body = await call("GET", f"{base}/api/stats")
    assert status == 503 and body["error"] == "unavailable"


async def test_posted_jobs_are_json_only(servers: Stack) -> None:
    url, height = f"{servers.node_http}/api/jobs", clients.next_height()
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what a cross-site form sends
    status, body = await call("POST", url, clients.job(height), form)
    assert status == 415 and body["error"] == "unsupported_media_type"
    status, _ = await call("POST", url, clients.job(height))  # the control: the same job as JSON
    assert status == 202


async def _raw_post(address: str, head: bytes, body: bytes, read_timeout: float) -> bytes:
    host, port = address.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            return await reader.read(4096)
    finally:
        writer.close()


async def test_a_body_declared_too_large_is_refused_before_it_is_sent(servers: Stack) -> None:
    head = (
        b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    answer = await _raw_post(servers.node_http, head, b"", read_timeout=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert b'"error":"too_large"' in answer


async def test_a_body_that_trickles_in_times_out(start_servers: StartServers) -> None:
    async with start_servers(node={"http_idle_timeout_seconds": 1}) as stack:
        body = orjson.dumps(clients.job(clients.next_height()))
        head = (
            b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        answer = await _raw_post(stack.node_http, head, body[:10], read_timeout=5)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert b'"error":"request_timeout"' in answer
        complete = await _raw_post(stack.node_http, head, body, read_timeout=5)  # the control
        assert complete.startswith(b"HTTP/1.1 202"), complete[:80]


async def test_a_method_a_path_lacks_is_405_naming_those_it_has(servers: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{servers.node_http}/api/jobs") as response:
            assert response.status == 405
            assert set(response.headers["Allow"].split(",")) == {"GET", "POST"}
            assert (await response.json())["error"] == "method_not_allowed"
