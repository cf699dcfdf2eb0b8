"""Bad input at both websocket servers: error frames and close codes (docs/protocol.md)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from tests.support import clients
from tests.support.poll import until
from tests.support.stack import Stack, servers_with

# Servers with small limits, so each one is quick to reach.
strict = servers_with(
    max_invalid_messages=3, max_message_bytes=4096, worker={"welcome_timeout_seconds": 0.5}
)


@pytest.mark.parametrize(
    ("first_frame", "reason"),
    [
        (b"hello", "invalid welcome: not valid JSON"),
        (orjson.dumps({"type": "solution"}), "invalid welcome: type: Input should be 'welcome'"),
        (
            orjson.dumps({k: v for k, v in clients.welcome().items() if k != "ip"}),
            "invalid welcome: ip: Field required",
        ),
        (
            orjson.dumps(clients.welcome(caption="c" * 300)),
            "invalid welcome: caption: String should have",
        ),
    ],
)
async def test_bad_welcome_closes_3000_with_a_reason(
    strict: Stack, first_frame: bytes, reason: str
) -> None:
    async with clients.connect(strict.worker_url) as ws:
        worker = clients.Worker(ws)
        await worker.send(first_frame)
        code, text = await worker.closed()
    assert code == 3000
    assert text.startswith(reason)


async def test_no_welcome_in_time_closes_3000(strict: Stack) -> None:
    async with clients.connect(strict.worker_url) as ws:
        code, text = await clients.Worker(ws).closed(timeout=3)
    assert (code, text) == (3000, "no welcome within 0.5 seconds")


@contextlib.asynccontextmanager
async def speaking(stack: Stack, role: str) -> AsyncIterator[clients.Worker]:
    """A connection to `role`'s server; a worker's is past its welcome."""
    async with clients.connect(stack.node_url if role == "node" else stack.worker_url) as ws:
        client = clients.Worker(ws)
        if role == "worker":
            await client.send(clients.welcome())
        yield client


@pytest.mark.parametrize("role", ["node", "worker"])
async def test_oversize_frame_closes_1009(strict: Stack, role: str) -> None:
    async with speaking(strict, role) as client:
        await client.send(b'{"pad": "' + b"x" * 5000 + b'"}')
        code, _ = await client.closed()
    assert code == 1009


@pytest.mark.parametrize("role", ["node", "worker"])
async def test_invalid_frames_get_error_frames_then_1008(strict: Stack, role: str) -> None:
    async with speaking(strict, role) as client:
        bad = {"block_height": "x"} if role == "node" else {"task_id": "x"}
        errors = []
        for _ in range(3):
            await client.send(bad)
        while len(errors) < 3:
            frame = await client.receive()
            if frame.get("type") == "error":
                errors.append(frame)
        code, reason = await client.closed()
    assert all(e["code"] == "invalid_message" and e["detail"] for e in errors)
    assert (code, reason) == (1008, "too many invalid messages")


async def test_connection_stays_open_after_an_invalid_frame(strict: Stack) -> None:
    height = clients.next_height()
    async with clients.worker_and_node(strict) as (worker, node):
        await node.send(b"{not json")
        error = await node.receive()
        assert error["type"] == "error" and error["detail"].startswith("not valid JSON")
        await node.send(clients.job(height))
        await worker.job_for(height)


async def test_solution_for_unknown_task_is_refused_and_not_stored(
    stack: Stack, db: asyncpg.Pool
) -> None:
    task_id = str(uuid.uuid4())
    async with clients.worker_client(stack.worker_url) as worker:
        await worker.send(clients.solution(task_id))
        while (frame := await worker.receive()).get("type") != "error":
            pass
    assert frame["code"] == "unknown_task"
    assert task_id in frame["detail"]
    assert (
        await db.fetchval("SELECT count(*) FROM solution WHERE task_id = $1", uuid.UUID(task_id))
        == 0
    )


async def test_worker_row_records_connect_and_disconnect(stack: Stack, db: asyncpg.Pool) -> None:
    hello = clients.welcome()
    async with clients.worker_client(stack.worker_url, hello) as worker:
        query = "SELECT * FROM worker WHERE hardware_id = $1"
        row = await until(lambda: db.fetchrow(query, hello["hardware_id"]))  # welcome processed
        assert row["disconnected_at"] is None
        assert (row["ip"], row["remote_ip"]) == ("203.0.113.7", "127.0.0.1")
        assert (row["address"], row["hardware"], row["caption"]) == (
            "aleo1test",
            "RTX 4090",
            "rig-7",
        )
        assert row["server_instance"].startswith("test-")
        await worker.ws.close()
    row_id = row["id"]
    row = await until(
        lambda: db.fetchrow("SELECT * FROM worker WHERE id = $1", row_id),
        lambda found: found["disconnected_at"] is not None,
    )
    assert row["disconnected_at"] is not None
    assert row["close_code"] == 1000


async def test_objects_that_would_change_are_refused_naming_the_field(
    stack: Stack, db: asyncpg.Pool
) -> None:
    """orjson would keep one of two keys and make a float of 2**64: both refused, never changed."""
    height, refused_height = clients.next_height(), clients.next_height()
    # Written by hand: orjson.dumps can write neither.
    twice = (
        b'{"type": "job", "epoch_challenge": {"epoch_number": %d, "a": {"x": 1, "x": 2}}, '
        b'"proof_target": 100, "block_height": %d}' % (refused_height, refused_height)
    )
    async with clients.worker_and_node(stack) as (worker, node):
        await node.send(twice)
        assert await node.receive() == {
            "type": "error",
            "code": "invalid_message",
            "detail": 'epoch_challenge.a: duplicate key "x"',
        }
        task_id = await clients.job_sent(node, worker, height)  # the positive control flows
        big = orjson.dumps(clients.solution(task_id, target=100)).replace(
            b'"nonce":', b'"nonce":18446744073709551616,"was":', 1
        )
        await worker.send(big)
        while (frame := await worker.receive()).get("type") != "error":
            pass
        assert (frame["code"], frame["detail"]) == (
            "invalid_message",
            "solution.partial_solution.nonce: integer larger than 64 bits",
        )
        # The largest integer carried exactly, next to a key orjson sees as written.
        body = clients.solution_body(nonce=2**64 - 1)
        await worker.send(clients.solution(task_id, target=100, body=body))
        message = await node.ws.receive(timeout=5)
        assert message.data == orjson.dumps(body).decode()
    stored = await db.fetch(
        "SELECT solution::text FROM solution WHERE task_id = $1", uuid.UUID(task_id)
    )
    assert [orjson.loads(row["solution"]) for row in stored] == [body]
    assert not await db.fetchval("SELECT count(*) FROM job WHERE block_height = $1", refused_height)


async def test_an_oversize_frame_is_recorded_1009_on_the_worker_row(
    strict: Stack, db: asyncpg.Pool
) -> None:
    hardware_id = f"big-{uuid.uuid4().hex[:8]}"
    async with clients.connect(strict.worker_url) as ws:
        client = clients.Worker(ws)
        await client.send(clients.welcome(hardware_id))
        await client.send(b'{"pad": "' + b"x" * 5000 + b'"}')
        assert (await client.closed())[0] == 1009
    code = await until(lambda: _row_close_code(db, hardware_id), timeout=10)
    assert code == 1009


async def _row_close_code(db: asyncpg.Pool, hardware_id: str) -> int | None:
    return await db.fetchval(
        "SELECT close_code FROM worker WHERE hardware_id = $1 AND disconnected_at IS NOT NULL",
        hardware_id,
    )
