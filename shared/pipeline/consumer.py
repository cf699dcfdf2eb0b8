"""Persist-and-broadcast consumption of one RabbitMQ queue, in batches.

Messages are taken as they come (no waiting to fill a batch, so latency stays
low) up to `batch_size`; undecodable ones are dead-lettered at once; the rest
are processed together and acked only after processing succeeded (in bulk,
see `shared.pipeline.acks`). Transient failures (Postgres or Kafka away) are
retried with backoff while the messages stay unacked; a batch that fails
otherwise is halved until each bad item stands alone, and that item is
dead-lettered with the reason. A dead letter counts only once RabbitMQ
confirmed it into its queue: one it returns (the queue is missing) is sent
again after a backoff, its message still unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared.backoff import Backoff
from shared.errors import DEPENDENCY_DOWN, DatabaseUnavailable, ProtocolError, count, unavailable
from shared.metrics import DEAD_LETTERS_REFUSED
from shared.microbatch import BATCH_CONTENT_TYPE, BadBatch, Item, item_count, items
from shared.pipeline.acks import BulkAcks
from shared.pipeline.settings import ConsumerSettings
from shared.rabbit import connect, dead_letter_item, declare_topology

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(slots=True)
class Delivery(Generic[T]):
    message: AbstractIncomingMessage  # may carry other deliveries too (a micro-batch)
    item: T
    received_at: int
    body: bytes = b""  # the item's own JSON: what is dead-lettered if it fails alone
    headers: dict[str, Any] = field(default_factory=dict)


Process = Callable[[list[Delivery[T]]], Awaitable[None]]


class BatchConsumer(Generic[T]):
    def __init__(
        self,
        settings: ConsumerSettings,
        queue_name: str,
        decode: Callable[[bytes], T],
        process: Process[T],
    ) -> None:
        self.settings = settings
        self.queue_name = queue_name
        self.decode = decode
        self.process = process
        self.consuming = False
        self._channel: AbstractChannel | None = None
        self._stopping = False
        # None in the inbox wakes the loop to stop: it needs nothing else to wait on.
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopped = asyncio.Event()
        self._acks = BulkAcks()

    async def run(self) -> None:
        """Connect (retrying), consume until `stop()`, then return; cancel to abandon."""
        connection = await connect(
            self.settings.rabbitmq_url.get_secret_value(), self.settings.client_name
        )
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.settings.prefetch_count)
            await declare_topology(channel)
            queue = await channel.get_queue(self.queue_name)
            tag = await queue.consume(self._inbox.put)
            self._channel = channel
            self.consuming = True
            log.info("consuming", extra={"queue": self.queue_name})
            try:
                await self._loop(channel)
            finally:
                self.consuming = False
                await self._cancel(queue, tag)
        finally:
            await connection.close()  # unacked messages go back to the queue
            self._stopped.set()

    @property
    def ready(self) -> bool:
        """Consuming, over a channel that is open right now (not reconnecting)."""
        return self.consuming and self._channel is not None and not self._channel.is_closed

    async def stop(self, timeout: float) -> None:
        """Stop taking messages; give the batch in flight `timeout` seconds to finish.

        Messages received but not started are left unacked: the broker redelivers them.
        """
        self._stopping = True
        self._inbox.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), timeout)

    async def _loop(self, channel: AbstractChannel) -> None:
        """Take batches while a slot is free; a full house lets the next batch grow.

        `batch_size` counts items: a micro-batch message brings several.
        """
        slots = asyncio.Semaphore(self.settings.max_in_flight_batches)
        async with asyncio.TaskGroup() as batches:  # waits for the batches in flight
            while not self._stopping:
                await slots.acquire()
                if (first := await self._inbox.get()) is None:
                    slots.release()
                    break
                batch, size = [first], item_count(first)
                while size < self.settings.batch_size and not self._inbox.empty():
                    message = self._inbox.get_nowait()
                    if message is None:
                        self._stopping = True
                        break
                    batch.append(message)
                    size += item_count(message)
                batches.create_task(self._run_batch(channel, batch, slots))

    async def _run_batch(
        self,
        channel: AbstractChannel,
        batch: list[AbstractIncomingMessage],
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            await self._handle(channel, batch)
        except Exception as error:  # e.g. the channel died mid-batch: hand them back
            log.error("batch_failed", extra={"queue": self.queue_name, "error": repr(error)})
            for message in batch:
                if not message.processed and not self._acks.is_settled(message):
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
                    await self._acks.settled_elsewhere(message)
        finally:
            slots.release()

    async def _handle(self, channel: AbstractChannel, batch: list[AbstractIncomingMessage]) -> None:
        """Process every item of the batch, then ack its messages (bad items dead-lettered)."""
        deliveries: list[Delivery[T]] = []
        whole: list[AbstractIncomingMessage] = []  # messages settled here, all items done
        for message in batch:
            try:
                carried = items(message)
            except BadBatch as error:
                await self._dead_letter(channel, message, f"malformed batch: {error}")
                continue
            whole.append(message)
            for item, headers in carried:
                delivery = await self._decode(channel, message, item, headers)
                if delivery is not None:
                    deliveries.append(delivery)
        if deliveries:
            await self._process(channel, deliveries)
        # Every item is now stored and broadcast, or dead-lettered on its own.
        await self._acks.ack(whole)

    async def _decode(
        self,
        channel: AbstractChannel,
        message: AbstractIncomingMessage,
        item: Item,
        headers: dict[str, Any],
    ) -> Delivery[T] | None:
        try:
            decoded = self.decode(item.body)
        except ProtocolError as error:
            await self._dead_letter_item(channel, message, item.body, headers, error.detail)
            return None
        return Delivery(message, decoded, item.received_at, item.body, headers)

    async def _process(self, channel: AbstractChannel, deliveries: list[Delivery[T]]) -> None:
        """Process every delivery, or dead-letter it with the reason it fails alone.

        A batch that fails is halved until the bad ones stand alone: one bad
        item in n costs about 2 log2(n) attempts, and the good halves are
        processed once each.
        """
        error = await self._attempt(deliveries)
        if error is None:
            return
        if len(deliveries) > 1:
            half = len(deliveries) // 2
            await self._process(channel, deliveries[:half])
            await self._process(channel, deliveries[half:])
            return
        reason = f"{type(error).__name__}: {error}"
        log.error("message_failed", extra={"queue": self.queue_name, "error": reason})
        bad = deliveries[0]
        await self._dead_letter_item(channel, bad.message, bad.body, bad.headers, reason)

    async def _attempt(self, deliveries: list[Delivery[T]]) -> Exception | None:
        """Process, retrying while a dependency is down; the error if the batch is at fault."""
        backoff = Backoff(maximum=self.settings.retry_max_seconds)
        while True:
            try:
                await self.process(deliveries)
                return None
            except Exception as error:
                # A bare OSError or timeout is the database's: Kafka's are KafkaErrors.
                failure = unavailable(error, DatabaseUnavailable)
                if failure is None:
                    return error
                count(failure)
                log.warning(
                    "transient_failure", extra={"queue": self.queue_name, "error": repr(error)}
                )
                await backoff.sleep()

    async def _dead_letter(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, reason: str
    ) -> None:
        """A whole message, acked here once its dead letter is confirmed."""
        headers: dict[str, Any] = dict(message.headers or {})
        await self._send_dead_letter(channel, message.body, headers, message.content_type, reason)
        await message.ack()
        await self._acks.settled_elsewhere(message)

    async def _dead_letter_item(
        self,
        channel: AbstractChannel,
        message: AbstractIncomingMessage,
        body: bytes,
        headers: dict[str, Any],
        reason: str,
    ) -> None:
        """One item alone; its message is acked with the batch, once every item is done."""
        batched = message.content_type == BATCH_CONTENT_TYPE
        content_type = "application/json" if batched else message.content_type
        await self._send_dead_letter(channel, body, headers, content_type, reason)

    async def _send_dead_letter(
        self,
        channel: AbstractChannel,
        body: bytes,
        headers: dict[str, Any],
        content_type: str | None,
        reason: str,
    ) -> None:
        """Dead-letter until RabbitMQ confirms it: until then the message is not acked.

        Gives up (raises) only when stopping or when the channel closed: then the
        message goes back to the queue with the rest of its batch.
        """
        backoff = Backoff(maximum=self.settings.retry_max_seconds)
        while True:
            try:
                await dead_letter_item(
                    channel, self.queue_name, body, headers, content_type, reason
                )
                return
            except DEPENDENCY_DOWN as error:
                DEAD_LETTERS_REFUSED.labels(queue=self.queue_name).inc()
                log.error(
                    "dead_letter_refused", extra={"queue": self.queue_name, "error": repr(error)}
                )
                if self._stopping or channel.is_closed:
                    raise
                await backoff.sleep()

    @staticmethod
    async def _cancel(queue: AbstractQueue, tag: str) -> None:
        with contextlib.suppress(Exception):
            await queue.cancel(tag)
