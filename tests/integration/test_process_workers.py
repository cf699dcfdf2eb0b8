"""Persist-and-broadcast workers: bad messages go to the dead-letter queue, never block."""

from __future__ import annotations

import uuid

import aio_pika
import asyncpg
import orjson
import pytest

from shared.microbatch import BATCH_CONTENT_TYPE, ITEMS_HEADER, Item, encode_batch
from shared.protocol import now_ns
from shared.rabbit import REASON_HEADER
from shared.routes import JOB, SOLUTION, dead_letter_queue
from tests.support import clients
from tests.support.poll import broadcast_row, until
from tests.support.rabbit import publish, published_job
from tests.support.stack import Backends, Processors


async def dead_letters(
    channel: aio_pika.abc.AbstractChannel, queue: str, marker: str, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Wait for `count` dead-lettered messages whose body contains `marker`."""
    dlq = await channel.get_queue(dead_letter_queue(queue))
    found = []

    async def all_found() -> bool:
        message = await dlq.get(fail=False)
        if message is not None:
            await message.ack()
            if marker.encode() in message.body:
                found.append(message)
        return len(found) >= count

    await until(all_found, timeout=10)
    return found


@pytest.fixture
async def channel(backends: Backends, processors: Processors):
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        yield await connection.channel(publisher_confirms=True)


async def test_poison_jobs_are_dead_lettered_with_a_reason_and_good_ones_flow(
    channel, db: asyncpg.Pool
) -> None:
    marker = uuid.uuid4().hex
    await publish(channel, JOB.exchange, f"not json {marker}".encode())
    await publish(channel, JOB.exchange, orjson.dumps({"marker": marker, "block_height": "x"}))
    row = await published_job(channel, db)
    assert row["task_id"]
    dead = await dead_letters(channel, JOB.queue, marker, 2)
    reasons = sorted(m.headers[REASON_HEADER] for m in dead)
    assert reasons[0] == "epoch_challenge: Field required"
    assert reasons[1].startswith("not valid JSON")


async def test_solution_for_unknown_task_is_dead_lettered_not_stored(
    channel, db: asyncpg.Pool
) -> None:
    job_row = await published_job(channel, db)
    unknown = uuid.uuid4()
    marker = str(unknown)

    def message(task_id: uuid.UUID) -> bytes:
        return orjson.dumps(
            {
                "task_id": str(task_id),
                "solution": clients.solution_body(),
                "solution_target": 5,
                "hardware_id": "gpu-x",
                "caption": "c",
            }
        )

    # one batch: a known task, an unknown one, and one without a nonce
    await publish(channel, SOLUTION.exchange, message(unknown))
    await publish(channel, SOLUTION.exchange, orjson.dumps({"task_id": marker, "solution": {}}))
    await publish(channel, SOLUTION.exchange, message(job_row["task_id"]))
    await broadcast_row(db, "SELECT * FROM solution WHERE task_id = $1", job_row["task_id"])
    dead = await dead_letters(channel, SOLUTION.queue, marker, 2)
    reasons = sorted(m.headers[REASON_HEADER] for m in dead)
    assert any(r.startswith("UnknownTask: unknown task") for r in reasons)
    assert "solution: Value error, partial_solution must be an object" in reasons
    assert await db.fetchval("SELECT count(*) FROM solution WHERE task_id = $1", unknown) == 0


async def test_a_bad_item_of_a_micro_batch_is_dead_lettered_alone(
    channel, db: asyncpg.Pool
) -> None:
    task_id = (await published_job(channel, db))["task_id"]
    unknown = uuid.uuid4()

    def item(task: uuid.UUID) -> Item:
        body = {"task_id": str(task), "solution": clients.solution_body(), "solution_target": 5}
        return Item(orjson.dumps({**body, "hardware_id": "gpu-b", "caption": "c"}), now_ns())

    marker = uuid.uuid4().hex
    batch = [item(task_id), Item(f"not json {marker}".encode(), 7), item(unknown), item(task_id)]
    target = await channel.get_exchange(SOLUTION.exchange)
    message = aio_pika.Message(
        encode_batch(batch), content_type=BATCH_CONTENT_TYPE, headers={ITEMS_HEADER: 4}
    )
    await target.publish(message, routing_key="")
    query = "SELECT count(*) FROM solution WHERE task_id = $1 AND broadcast_at IS NOT NULL"
    await until(lambda: db.fetchval(query, task_id), lambda stored: stored >= 2, timeout=10)
    (garbage,) = await dead_letters(channel, SOLUTION.queue, marker, 1)
    assert garbage.body == f"not json {marker}".encode()  # the item alone, not the batch
    assert garbage.headers["received_at"] == 7
    assert garbage.headers[REASON_HEADER].startswith("not valid JSON")
    (orphan,) = await dead_letters(channel, SOLUTION.queue, str(unknown), 1)
    assert orjson.loads(orphan.body)["task_id"] == str(unknown)
    assert orphan.headers[REASON_HEADER].startswith("UnknownTask")


async def test_a_malformed_micro_batch_is_dead_lettered_whole(channel) -> None:
    marker = uuid.uuid4().hex.encode()
    body = encode_batch([Item(b'{"a":1}', 1)])[:-2] + marker  # its length runs past the end
    target = await channel.get_exchange(SOLUTION.exchange)
    await target.publish(aio_pika.Message(body, content_type=BATCH_CONTENT_TYPE), routing_key="")
    (dead,) = await dead_letters(channel, SOLUTION.queue, marker.decode(), 1)
    assert dead.body == body
    assert dead.headers[REASON_HEADER].startswith("malformed batch")
