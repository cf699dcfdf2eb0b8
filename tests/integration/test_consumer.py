"""The batch consumer against RabbitMQ, Postgres and Tansu: bad items found by halving.

Each test consumes a private queue with persist-and-broadcast of solutions
(to a private topic), whose `store` counts the attempts: one per call of
persist, with the size of the batch it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple

import aio_pika
import asyncpg
import orjson
import pytest

from process_solution_worker.persist import SOLUTIONS
from shared.codec import parse_internal
from shared.db import create_pool
from shared.kafka import Broadcaster, broadcaster
from shared.microbatch import Item, to_message
from shared.pipeline.consumer import BatchConsumer, Delivery
from shared.pipeline.persist import Persisted, persist_and_broadcast
from shared.pipeline.settings import ConsumerSettings
from shared.protocol import SolutionMessage, now_ns
from shared.rabbit import REASON_HEADER
from shared.routes import dead_letter_queue
from tests.integration.test_persist import INSERT_ROW, private_topic, produced
from tests.support.clients import challenge, next_height, solution_body
from tests.support.poll import until
from tests.support.stack import Backends

# The service's PERSIST_TIMEOUT_SECONDS, short: a persist waiting longer is a dependency down.
STALL_SECONDS = 0.5


@pytest.fixture
async def settings(backends: Backends) -> ConsumerSettings:
    return ConsumerSettings(**backends.settings())


@pytest.fixture
async def channel(backends: Backends) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        yield await connection.channel(publisher_confirms=True)


@pytest.fixture
async def queue(channel: aio_pika.abc.AbstractChannel) -> AsyncIterator[str]:
    """A private work queue and its dead-letter queue."""
    name = f"consumer-test-{uuid.uuid4().hex[:8]}"
    await channel.declare_queue(name)
    await channel.declare_queue(dead_letter_queue(name))
    yield name
    await channel.queue_delete(name)
    await channel.queue_delete(dead_letter_queue(name))


@pytest.fixture
async def pool(settings: ConsumerSettings) -> AsyncIterator[asyncpg.Pool]:
    async with create_pool(settings.postgres_dsn.get_secret_value(), size=4) as pool:
        yield pool


@pytest.fixture
async def kafka(settings: ConsumerSettings) -> AsyncIterator[Broadcaster]:
    async with broadcaster(settings) as kafka:
        yield kafka


class Rig(NamedTuple):
    """What a test consumes with: a private queue, and where the consumer stores and produces."""

    settings: ConsumerSettings
    channel: aio_pika.abc.AbstractChannel
    queue: str
    pool: asyncpg.Pool
    kafka: Broadcaster


@pytest.fixture
def rig(
    settings: ConsumerSettings,
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    pool: asyncpg.Pool,
    kafka: Broadcaster,
) -> Rig:
    return Rig(settings, channel, queue, pool, kafka)


def counted(topic: str, attempts: list[int]) -> Persisted[SolutionMessage, tuple[uuid.UUID, str]]:
    """SOLUTIONS to `topic`, noting the size of every batch persist is called with."""

    async def store(
        connection: asyncpg.Connection, solutions: list[SolutionMessage]
    ) -> tuple[set[int], Sequence[asyncpg.Record]]:
        attempts.append(len(solutions))
        return await SOLUTIONS.store(connection, solutions)

    return dataclasses.replace(SOLUTIONS, topic=topic, store=store)


@contextlib.asynccontextmanager
async def consuming(
    settings: ConsumerSettings,
    queue: str,
    kind: Persisted[SolutionMessage, tuple[uuid.UUID, str]],
    pool: asyncpg.Pool,
    kafka: Broadcaster,
) -> AsyncIterator[None]:
    async def persist(deliveries: list[Delivery[SolutionMessage]]) -> None:
        # As the service does: a stalled dependency becomes a TimeoutError, retried.
        async with asyncio.timeout(STALL_SECONDS):
            await persist_and_broadcast(kind, pool, kafka, deliveries)

    def decode(body: bytes) -> SolutionMessage:
        return parse_internal(SolutionMessage, body)

    consumer = BatchConsumer(settings, queue, decode, persist)
    running = asyncio.create_task(consumer.run())

    async def ready() -> bool:
        return consumer.ready

    try:
        await until(ready)
        yield
    finally:
        await consumer.stop(timeout=5)
        running.cancel()  # a batch still retrying after that: what the service does too
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def task_with_a_job(pool: asyncpg.Pool) -> uuid.UUID:
    height, task = next_height(), uuid.uuid4()
    await pool.execute(INSERT_ROW, height, challenge(height), task, True)
    return task


def solution(task: uuid.UUID) -> Item:
    body = {"task_id": str(task), "solution": solution_body(), "solution_target": 5}
    return Item(orjson.dumps({**body, "hardware_id": "gpu-c", "caption": "c"}), now_ns())


async def publish(channel: aio_pika.abc.AbstractChannel, queue: str, items: list[Item]) -> None:
    """All of them in one message: the consumer takes them as one batch."""
    await channel.default_exchange.publish(to_message(items), routing_key=queue)


async def queue_depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    declared = await channel.declare_queue(name, passive=True)
    return declared.declaration_result.message_count or 0


async def done(
    channel: aio_pika.abc.AbstractChannel,
    queue: str,
    pool: asyncpg.Pool,
    task: uuid.UUID,
    good: int,
) -> None:
    """Wait until `good` solutions of `task` are stored and broadcast and a letter is dead."""

    async def finished() -> bool:
        query = "SELECT count(*) FROM solution WHERE task_id = $1 AND broadcast_at IS NOT NULL"
        stored = await pool.fetchval(query, task)
        return stored == good and await queue_depth(channel, dead_letter_queue(queue)) > 0

    await until(finished)


async def dead_letters(
    channel: aio_pika.abc.AbstractChannel, queue: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Everything in the queue's dead-letter queue, taken off it."""
    dlq = await channel.get_queue(dead_letter_queue(queue))
    letters = []
    while (letter := await dlq.get(fail=False)) is not None:
        await letter.ack()
        letters.append(letter)
    return letters


async def one_bad_among(rig: Rig, good: int) -> tuple[str, uuid.UUID, list[Item], Item]:
    """A private topic, a stored task, `good` solutions for it, and one bad one.

    The bad one names a task never stored: it fails alone, every time.
    """
    topic, task = await private_topic(rig.settings), await task_with_a_job(rig.pool)
    return topic, task, [solution(task) for _ in range(good)], solution(uuid.uuid4())


def nonces(bodies: list[bytes]) -> list[str]:
    return sorted(str(orjson.loads(b)["solution"]["partial_solution"]["nonce"]) for b in bodies)


async def test_one_bad_item_in_500_is_found_by_halving_and_the_good_ones_stored_once(
    rig: Rig,
) -> None:
    settings, channel, queue, pool, kafka = rig
    topic, task, good, bad = await one_bad_among(rig, 499)
    batch = [*good[:317], bad, *good[317:]]
    attempts: list[int] = []
    await publish(channel, queue, batch)
    assert await queue_depth(channel, queue) == 1  # what the depth says once it is acked
    async with consuming(settings, queue, counted(topic, attempts), pool, kafka):
        await done(channel, queue, pool, task, len(good))
    (letter,) = await dead_letters(channel, queue)  # the bad one, and only it
    assert attempts[0] == len(batch)  # tried whole first
    # One try of the whole, then two per halving: 19 for 500, not one per item.
    assert len(attempts) <= 1 + 2 * math.ceil(math.log2(len(batch))), attempts
    assert letter.body == bad.body
    assert letter.headers[REASON_HEADER].startswith("UnknownTask: unknown task")
    records = await produced(settings, topic)
    assert sorted(str(r["solution"]["partial_solution"]["nonce"]) for r in records) == nonces(
        [item.body for item in good]
    ), "every good one produced, and once"
    assert await queue_depth(channel, queue) == 0, "the message was acked"


async def test_a_stalled_database_is_waited_out_whole_and_no_good_item_dead_lettered(
    rig: Rig,
) -> None:
    settings, channel, queue, pool, kafka = rig
    topic, task, good, bad = await one_bad_among(rig, 20)
    batch = [bad, *good]
    attempts: list[int] = []

    async def stalled_thrice() -> bool:
        return len(attempts) >= 3

    async with pool.acquire() as blocker:
        # Another transaction inserts one of their keys and holds it: the
        # batch's insert waits for it, past the stall limit, each time.
        stall = blocker.transaction()
        await stall.start()
        await SOLUTIONS.store(blocker, [parse_internal(SolutionMessage, good[0].body)])
        await publish(channel, queue, batch)
        async with consuming(settings, queue, counted(topic, attempts), pool, kafka):
            await until(stalled_thrice)
            stalled = list(attempts)
            await stall.rollback()
            await done(channel, queue, pool, task, len(good))
    assert stalled == [len(batch)] * len(stalled), "retried whole, not halved"
    (letter,) = await dead_letters(channel, queue)  # the bad one: none of the good ones
    assert letter.body == bad.body
    records = await produced(settings, topic)
    assert len(records) == len(good)
    assert await queue_depth(channel, queue) == 0
