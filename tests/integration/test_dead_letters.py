"""Dead letters over the API: depths and reasons without losing any, requeue, 503 when down."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from node_server.app import create_app
from node_server.settings import NodeServerSettings
from shared.protocol import now_ns
from shared.rabbit import REASON_HEADER
from shared.routes import SOLUTION, dead_letter_queue
from tests.support import clients
from tests.support.http import call
from tests.support.metrics import scrape
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.rabbit import publish, published_job
from tests.support.stack import Backends, Stack, server_ports, serving_server

SOLUTION_DLQ = dead_letter_queue(SOLUTION.queue)
REQUEUED = ("wspool_requeued_total", (("queue", SOLUTION.queue),))


@pytest.fixture(scope="module")
async def servers(start_servers) -> Stack:
    async with start_servers() as stack:
        yield stack


@pytest.fixture
async def channel(backends: Backends, servers: Stack):
    """A confirming channel; the solution dead-letter queue starts empty, so depths are exact."""
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        await (await channel.get_queue(SOLUTION_DLQ)).purge()
        yield channel


async def solution_letters(stack: Stack, peek: int = 10) -> dict[str, Any]:
    status, body = await call("GET", f"{stack.node_http}/api/dead-letters?peek={peek}")
    assert status == 200, body
    assert [q["queue"] for q in body["queues"]] == ["job", "solution", "solution.candidate"]
    return body["queues"][1]


async def test_dead_letters_show_depth_and_reasons_and_peeking_keeps_them_in_order(
    servers: Stack, channel
) -> None:
    markers = [uuid.uuid4().hex for _ in range(2)]
    for marker in markers:
        await publish(channel, SOLUTION.exchange, f"not json {marker}".encode())

    async def both_dead() -> dict[str, Any] | None:
        letters = await solution_letters(servers)
        return letters if letters["dead_letters"] == 2 else None

    letters = await until(both_dead)
    assert (letters["work_queue"], letters["dead_letter_queue"]) == (SOLUTION.queue, SOLUTION_DLQ)
    assert isinstance(letters["ready"], int)
    previews = [letter["body_preview"] for letter in letters["peek"]]
    assert previews == [f"not json {marker}" for marker in markers]
    assert all(letter["reason"].startswith("not valid JSON") for letter in letters["peek"])
    assert letters["peek"][0]["body_bytes"] == len(f"not json {markers[0]}")
    # Peeking again sees the same messages in the same order: none lost, none moved.
    again = await solution_letters(servers)
    assert (again["dead_letters"], again["peek"]) == (2, letters["peek"])
    limited = await solution_letters(servers, peek=1)
    assert [letter["body_preview"] for letter in limited["peek"]] == previews[:1]
    depths_only = await solution_letters(servers, peek=0)
    assert (depths_only["dead_letters"], depths_only["peek"]) == (2, [])


async def test_requeue_moves_dead_letters_back_to_be_stored(
    servers: Stack, channel, db: asyncpg.Pool
) -> None:
    task_id = (await published_job(channel, db))["task_id"]
    # Good solutions an older release could not process: straight into the dead-letter queue.
    for _ in range(3):
        await _dead_letter(channel, task_id)
    assert (await solution_letters(servers))["peek"][0]["reason"] == "an older release"
    before = (await scrape(servers.node_http)).get(REQUEUED, 0)
    url = f"{servers.node_http}/api/dead-letters/solution/requeue"
    assert await call("POST", f"{url}?limit=2") == (
        200,
        {"queue": "solution", "moved": 2, "remaining": 1},
    )
    assert await call("POST", url) == (200, {"queue": "solution", "moved": 1, "remaining": 0})

    async def all_stored() -> bool:
        query = "SELECT count(*) FROM solution WHERE task_id = $1 AND broadcast_at IS NOT NULL"
        return await db.fetchval(query, task_id) == 3

    await until(all_stored)
    assert (await scrape(servers.node_http))[REQUEUED] == before + 3
    assert (await solution_letters(servers))["dead_letters"] == 0
    assert await call("POST", url) == (200, {"queue": "solution", "moved": 0, "remaining": 0})
    status, body = await call("POST", f"{servers.node_http}/api/dead-letters/nope/requeue")
    assert (status, body["error"]) == (404, "not_found")


async def _dead_letter(channel: aio_pika.abc.AbstractChannel, task_id: uuid.UUID) -> None:
    body = {
        "task_id": str(task_id),
        "solution": clients.solution_body(),
        "solution_target": 5,
        "hardware_id": "gpu-requeued",
        "caption": "c",
    }
    headers = {"received_at": now_ns(), REASON_HEADER: "an older release"}
    message = aio_pika.Message(orjson.dumps(body), headers=headers)
    await channel.default_exchange.publish(message, routing_key=SOLUTION_DLQ)


async def test_dead_letters_answer_503_while_rabbitmq_is_down(
    servers: Stack, backends: Backends
) -> None:
    status, _ = await call("GET", f"{servers.node_http}/api/dead-letters")
    assert status == 200  # the same request where RabbitMQ answers
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    settings = NodeServerSettings(**backends.settings(**server_ports(), rabbitmq_url=nowhere))
    async with serving_server(settings, create_app(settings)) as base:
        for method, path in (("GET", "dead-letters"), ("POST", "dead-letters/job/requeue")):
            async with asyncio.timeout(10):
                status, body = await call(method, f"{base}/api/{path}")
            assert (status, body["error"]) == (503, "unavailable"), body
