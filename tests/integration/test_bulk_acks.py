"""Bulk acks against RabbitMQ: never past a message still in work, everything in the end.

What a channel had not acked goes back to the queue when the channel closes,
so the queue's ready count after a close tells exactly what was acked.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from shared.pipeline.acks import BulkAcks
from tests.support.stack import Backends

COUNT = 60


@pytest.fixture
async def queue_name(backends: Backends) -> AsyncIterator[str]:
    name = f"bulk-acks-{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(name, auto_delete=False)
        for number in range(COUNT):
            await channel.default_exchange.publish(aio_pika.Message(str(number).encode()), name)
        yield name
        await channel.queue_delete(name)


async def receive(channel: aio_pika.abc.AbstractChannel, name: str, count: int) -> list:
    queue = await channel.get_queue(name)
    inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(inbox.put)
    async with asyncio.timeout(10):
        return [await inbox.get() for _ in range(count)]


async def ready_after_close(
    backends: Backends, channel: aio_pika.abc.AbstractChannel, name: str
) -> int:
    assert not channel.is_closed, "the broker closed the channel (an ack it did not expect)"
    await channel.close()
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        probe = await connection.channel()
        previous = -1
        async with asyncio.timeout(10):
            while (count := await _ready(probe, name)) != previous:  # requeueing takes a moment
                previous = count
                await asyncio.sleep(0.3)
    return count


async def _ready(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count or 0


@pytest.fixture
async def consuming(
    backends: Backends, queue_name: str
) -> AsyncIterator[tuple[aio_pika.abc.AbstractChannel, list]]:
    """A channel that has received every message of the queue, none settled yet."""
    async with await aio_pika.connect(backends.rabbitmq_url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=COUNT)
        yield channel, await receive(channel, queue_name, COUNT)


async def test_acks_stop_at_the_first_message_still_in_work(
    backends: Backends, queue_name: str, consuming: tuple
) -> None:
    channel, messages = consuming
    acks = BulkAcks()
    await acks.ack(messages[10:])  # done, but 0-9 are still in work
    for message in messages[:4]:  # dead-lettered: acked one by one
        await message.ack()
        await acks.settled_elsewhere(message)
    await messages[4].nack(requeue=True)  # handed back
    await acks.settled_elsewhere(messages[4])
    assert not acks.is_settled(messages[5]) and acks.is_settled(messages[20])
    # Acked: 0-3 alone; 4 went back; 5-9 hold every ack above them.
    assert await ready_after_close(backends, channel, queue_name) == COUNT - 4


async def test_every_message_is_acked_once_all_are_settled_in_any_order(
    backends: Backends, queue_name: str, consuming: tuple
) -> None:
    channel, messages = consuming
    acks = BulkAcks()
    order = list(range(COUNT))
    random.Random(7).shuffle(order)
    for start in range(0, COUNT, 7):  # batches finishing out of order
        await acks.ack(messages[i] for i in order[start : start + 7])
    assert all(acks.is_settled(message) for message in messages)
    assert await ready_after_close(backends, channel, queue_name) == 0
