"""Each limit of the websocket servers triggers with its documented code and reason.

Frame size (1009), invalid frames (1008), the welcome timeout and caption
length (3000) are covered in test_edges.py; this module covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from shared.protocol import MAX_JSON_DEPTH
from tests.support import clients, raw_ws
from tests.support.stack import Stack, servers_with


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep (the object itself is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"down": value}
    return value


limited = servers_with(
    max_invalid_messages=3, max_object_bytes=1024, worker={"max_connections_per_ip": 3}
)


async def _refusal(url: str) -> tuple[int, dict[str, Any], str | None]:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        async with session.get(url, headers={"Upgrade": "websocket"}) as response:
            body = await response.json()
            return refused.value.status, body, response.headers.get("Retry-After")


async def test_connections_per_ip_are_capped_with_503_before_the_upgrade(limited: Stack) -> None:
    async with contextlib.AsyncExitStack() as open_sockets:
        sockets = [
            await open_sockets.enter_async_context(clients.connect(limited.worker_url))
            for _ in range(3)
        ]
        status, body, retry_after = await _refusal(limited.worker_url)
        await sockets[0].close()
        async with clients.connect(limited.worker_url) as again:  # a freed slot is usable again
            await clients.Worker(again).send(b"[]")
            assert (await clients.Worker(again).closed())[0] == 3000
    assert status == 503
    assert body == {
        "error": "unavailable",
        "reason": "per_ip",
        "detail": "too many connections from this address",
    }
    assert retry_after == "5"


async def test_total_connections_are_capped_with_503(start_servers) -> None:
    async with start_servers(worker={"max_connections": 2}) as servers:
        async with clients.connect(servers.worker_url), clients.connect(servers.worker_url):
            status, body, _ = await _refusal(servers.worker_url)
    assert status == 503
    assert (body["reason"], body["detail"]) == ("capacity", "server at connection capacity")


throttled = servers_with(rate_limit_per_second=1, rate_limit_burst=5)


@pytest.mark.parametrize("role", ["node", "worker"])
async def test_message_flood_closes_1008_rate_limit(throttled: Stack, role: str) -> None:
    url = throttled.node_url if role == "node" else throttled.worker_url
    async with clients.connect(url) as ws:
        client = clients.Worker(ws)
        if role == "worker":
            await client.send(clients.welcome())  # takes one token of the five
        for _ in range(20):
            await client.send(b'{"type": "nonsense"}')
        code, reason = await client.closed()
    assert (code, reason) == (1008, "rate limit")


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("ip", "1" * 46, "ip: String should have at most 45 characters"),
        ("address", "a" * 256, "address: String should have at most 255 characters"),
        ("hardware", "h" * 256, "hardware: String should have at most 255 characters"),
        ("hardware_id", "g" * 256, "hardware_id: String should have at most 255 characters"),
        ("hardware_id", "gpu\x000", "hardware_id: Value error, contains a NUL character"),
        ("caption", 7, "caption: Input should be a valid string"),
    ],
)
async def test_welcome_fields_are_bounded(
    limited: Stack, field: str, value: Any, detail: str
) -> None:
    async with clients.connect(limited.worker_url) as ws:
        worker = clients.Worker(ws)
        await worker.send(clients.welcome(**{field: value}))
        code, reason = await worker.closed()
    assert (code, reason) == (3000, f"invalid welcome: {detail}"[:120])


async def _error_for(client: clients.Worker, frame: dict[str, Any]) -> dict[str, Any]:
    await client.send(frame)
    while (answer := await client.receive()).get("type") != "error":
        pass
    return answer


@pytest.mark.parametrize(
    ("challenge", "detail"),
    [
        (nested(MAX_JSON_DEPTH + 1), "nested deeper than 32 levels"),
        ({"hash": "ab\x00cd"}, "contains a NUL character"),
        ({"bad\x00key": 1}, "contains a NUL character"),
    ],
)
async def test_epoch_challenge_depth_and_nul_are_refused(
    limited: Stack, challenge: dict[str, Any], detail: str
) -> None:
    async with clients.connect(limited.node_url) as ws:
        error = await _error_for(
            clients.Worker(ws), {**clients.job(clients.next_height()), "epoch_challenge": challenge}
        )
    assert error == {
        "type": "error",
        "code": "invalid_message",
        "detail": f"epoch_challenge: Value error, {detail}",
    }


async def test_epoch_challenge_at_the_depth_limit_is_accepted(limited: Stack) -> None:
    height = clients.next_height()
    async with (
        clients.connect(limited.node_url) as node_ws,
        clients.connect(limited.worker_url) as worker_ws,
    ):
        worker = clients.Worker(worker_ws)
        await worker.send(clients.welcome())
        deep = {**nested(MAX_JSON_DEPTH), "epoch_number": height}
        await clients.Worker(node_ws).send({**clients.job(height), "epoch_challenge": deep})
        frame = await worker.job_for(height, timeout=10)
    assert frame["epoch_challenge"] == deep


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {**clients.solution_body(), "deep": nested(MAX_JSON_DEPTH)},
            "nested deeper than 32 levels",
        ),
        (clients.solution_body(nonce="n\x00"), "contains a NUL character"),
        (
            clients.solution_body(nonce="9" * 256),
            "partial_solution.nonce is longer than 255 characters",
        ),
    ],
)
async def test_solution_depth_nul_and_nonce_are_refused(
    limited: Stack, body: dict[str, Any], detail: str
) -> None:
    async with clients.connect(limited.worker_url) as ws:
        worker = clients.Worker(ws)
        await worker.send(clients.welcome())
        error = await _error_for(worker, clients.solution(str(uuid.uuid4()), body=body))
    assert (error["code"], error["detail"]) == (
        "invalid_message",
        f"solution: Value error, {detail}",
    )


async def test_unknown_tasks_count_as_invalid_frames_and_are_never_stored(
    limited: Stack, db: asyncpg.Pool
) -> None:
    task_ids = [uuid.uuid4() for _ in range(3)]
    async with clients.connect(limited.worker_url) as ws:
        worker = clients.Worker(ws)
        await worker.send(clients.welcome())
        codes = [(await _error_for(worker, clients.solution(str(t))))["code"] for t in task_ids]
        code, reason = await worker.closed()
    assert codes == ["unknown_task"] * 3
    assert (code, reason) == (1008, "too many invalid messages")
    stored = await db.fetchval("SELECT count(*) FROM solution WHERE task_id = ANY($1)", task_ids)
    assert stored == 0


async def test_binary_and_text_frames_are_both_parsed(limited: Stack) -> None:
    async with clients.connect(limited.node_url) as ws:
        node = clients.Worker(ws)
        await node.send(orjson.dumps([1]))
        await node.send("[1]")
        details = [(await node.receive())["detail"] for _ in range(2)]
    assert details == ["message must be a JSON object"] * 2


async def test_objects_larger_than_max_object_bytes_are_refused(
    limited: Stack, db: asyncpg.Pool
) -> None:
    big_challenge = {"pad": "x" * 1100}
    body = {**clients.solution_body(), "pad": "y" * 1100}
    task_id = str(uuid.uuid4())
    async with (
        clients.connect(limited.node_url) as node_ws,
        clients.connect(limited.worker_url) as worker_ws,
    ):
        node, worker = clients.Worker(node_ws), clients.Worker(worker_ws)
        await worker.send(clients.welcome())
        node_error = await _error_for(
            node, {**clients.job(clients.next_height()), "epoch_challenge": big_challenge}
        )
        worker_error = await _error_for(worker, clients.solution(task_id, body=body))
    assert node_error["detail"] == "epoch_challenge: larger than 1024 bytes (1110)"
    assert worker_error["code"] == "invalid_message"
    assert worker_error["detail"].startswith("solution: larger than 1024 bytes (")
    stored = await db.fetchval(
        "SELECT count(*) FROM solution WHERE task_id = $1", uuid.UUID(task_id)
    )
    assert stored == 0


# Big jobs fill the socket buffers quickly: allow objects of their size, sent as
# fast as the node can.
BIG_JOBS = {
    "max_object_bytes": 16384,
    "rate_limit_bytes_per_second": 1 << 30,
    "rate_limit_bytes_burst": 1 << 30,
}


async def _raw_worker(address: str, hello: dict[str, Any]) -> asyncio.StreamWriter:
    """A worker that sends its welcome and then never reads: tiny buffers, no reading."""
    return (await _raw_worker_with_reader(address, hello, limit=1024))[1]


async def test_a_worker_that_does_not_read_is_closed_1008_slow_consumer(
    start_servers, db: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    hello = clients.welcome()
    async with start_servers(node=BIG_JOBS, worker={"send_queue_size": 4}) as servers:
        writer = await _raw_worker(servers.worker_address, hello)
        try:
            async with clients.connect(servers.node_url) as ws, asyncio.timeout(60):
                node = clients.Worker(ws)
                close_code = None
                while close_code is None:  # big jobs until the server gives up on the worker
                    height = clients.next_height()
                    await node.send(
                        {**clients.job(height), "epoch_challenge": {"pad": "x" * 15000}}
                    )
                    close_code = await db.fetchval(
                        "SELECT close_code FROM worker WHERE hardware_id = $1",
                        hello["hardware_id"],
                    )
        finally:
            writer.close()
    assert close_code == 1008  # the client can't read the reason: its buffers are full
    assert any(r.getMessage() == "slow_consumer" for r in caplog.records)


async def test_a_busy_worker_gets_the_newest_job_next_never_an_older_one(start_servers) -> None:
    """Jobs that pile up for a worker that reads slowly are replaced, not queued."""
    hello = clients.welcome()
    worker_settings = {"send_queue_size": 1000}  # replaced jobs only; it is not closed here
    async with start_servers(node=BIG_JOBS, worker=worker_settings) as servers:
        address = servers.worker_address
        reader, writer = await _raw_worker_with_reader(address, hello)
        replaced_before = _jobs_replaced()
        heights: list[int] = []
        try:
            async with clients.connect(servers.node_url) as ws, asyncio.timeout(60):
                node = clients.Worker(ws)
                while _jobs_replaced() < replaced_before + 3:  # the worker's buffers are full
                    heights.append(clients.next_height())
                    padded = {"pad": "x" * 15000, "height": heights[-1]}
                    await node.send({**clients.job(heights[-1]), "epoch_challenge": padded})
                    await asyncio.sleep(0.05)
                received = []
                while not received or received[-1] != heights[-1]:
                    job = await raw_ws.receive(reader, timeout=60)
                    received.append(job["epoch_challenge"].get("height"))
        finally:
            writer.close()
    ours = [height for height in received if height in heights]
    assert ours == sorted(ours) and len(set(ours)) == len(ours)  # in height order, once
    assert ours[-1] == heights[-1]  # the newest arrived
    assert len(ours) < len(heights)  # replaced ones were never sent


def _jobs_replaced() -> float:
    return REGISTRY.get_sample_value("wspool_jobs_replaced_total") or 0.0


async def _raw_worker_with_reader(
    address: str, hello: dict[str, Any], limit: int = 65536
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A worker with tiny buffers that sends its welcome; it reads only when the test does."""
    reader, writer = await raw_ws.connect(address, limit=limit)
    await raw_ws.send(writer, hello)
    return reader, writer
