"""Kafka to websocket fan-out, in the two modes of `fanout_mode` (docs/architecture.md, "Fan-out").

`SharedFanout`: one group-less consumer per process; each record is decoded
once (frame included) and offered to every subscriber. `PerConnectionFanout`:
each subscriber owns a consumer and decodes for itself. Subscribers apply
their own filter in `offer`, which must not block.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer

from shared.fanout.consume import consume, start_consumer
from shared.fanout.stream import Fanout, Stream, Subscriber, offered
from shared.kafka import assign_all, new_consumer
from shared.runtime.tasks import cancelled
from shared.settings import ServiceSettings

T = TypeVar("T")


class _TopicFanout(Generic[T]):
    """What both modes read: a stream, with the consumers `settings` describe."""

    def __init__(
        self, settings: ServiceSettings, stream: Stream[T], fetch_max_wait_ms: int = 100
    ) -> None:
        self.settings = settings
        self.stream = stream
        self.fetch_max_wait_ms = fetch_max_wait_ms

    def new_consumer(self) -> AIOKafkaConsumer:
        return new_consumer(self.settings, self.fetch_max_wait_ms)


class SharedFanout(_TopicFanout[T]):
    """One consumer for the whole process."""

    def __init__(self, settings: ServiceSettings, stream: Stream[T], fetch_max_wait_ms: int = 100):
        super().__init__(settings, stream, fetch_max_wait_ms)
        self.subscribers: set[Subscriber[T]] = set()
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    async def subscribe(self, subscriber: Subscriber[T]) -> None:
        self.subscribers.add(subscriber)

    async def unsubscribe(self, subscriber: Subscriber[T]) -> None:
        self.subscribers.discard(subscriber)

    def deliver(self, item: T) -> None:
        for subscriber in list(self.subscribers):
            if not offered(subscriber, item):
                self.subscribers.discard(subscriber)

    async def run(self) -> None:
        """Consume until cancelled; owned by the application's lifecycle."""
        consumer = self.new_consumer()
        await start_consumer(consumer)
        try:
            await consume(consumer, self.stream, self.deliver, self._set_ready, report_lag=True)
        finally:
            self._ready = False
            await consumer.stop()

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready


class PerConnectionFanout(_TopicFanout[T]):
    """Each subscriber gets its own consumer and task: isolated, costlier.

    A task that dies tells its subscriber at once (`failed`): its connection
    ends then, not at unsubscribe, instead of staying open without updates.
    """

    def __init__(self, settings: ServiceSettings, stream: Stream[T], fetch_max_wait_ms: int = 100):
        super().__init__(settings, stream, fetch_max_wait_ms)
        self._tasks: dict[Subscriber[T], asyncio.Task[None]] = {}

    @property
    def ready(self) -> bool:
        return True  # each connection's consumer reports for itself

    async def subscribe(self, subscriber: Subscriber[T]) -> None:
        consumer = self.new_consumer()
        try:
            await consumer.start()
            partitions = await assign_all(consumer, self.stream.topic, self.stream.replay_last)
        except BaseException:
            await consumer.stop()
            raise
        self._tasks[subscriber] = asyncio.create_task(
            self._run(consumer, subscriber, partitions), name=f"fanout-{self.stream.topic}"
        )

    async def _run(
        self, consumer: AIOKafkaConsumer, subscriber: Subscriber[T], partitions: set[int]
    ) -> None:
        failed = False

        def deliver(item: T) -> None:
            nonlocal failed  # then nothing more: the connection is closing
            failed = failed or not offered(subscriber, item)

        try:
            await consume(consumer, self.stream, deliver, partitions=partitions)
            raise RuntimeError(f"consuming {self.stream.topic} ended")  # it never returns
        except Exception as error:  # the subscriber's feed is gone: it must end now
            subscriber.failed(error)
        finally:
            await consumer.stop()

    async def unsubscribe(self, subscriber: Subscriber[T]) -> None:
        task = self._tasks.pop(subscriber, None)
        if task is not None:
            await cancelled(task)

    async def close(self) -> None:
        for subscriber in list(self._tasks):
            await self.unsubscribe(subscriber)


class MergedFanout(Generic[T]):
    """Several fan-outs as one: a subscriber is offered the items of each.

    Each reads its own topic with its own consumer, so a backlog on one topic
    (shares) never delays another (block candidates).
    """

    def __init__(self, fanouts: list[Fanout[T]]) -> None:
        self.fanouts = fanouts

    @property
    def ready(self) -> bool:
        return all(fanout.ready for fanout in self.fanouts)

    async def subscribe(self, subscriber: Subscriber[T]) -> None:
        subscribed: list[Fanout[T]] = []
        try:
            for fanout in self.fanouts:
                await fanout.subscribe(subscriber)
                subscribed.append(fanout)
        except BaseException:
            for fanout in subscribed:
                await fanout.unsubscribe(subscriber)
            raise

    async def unsubscribe(self, subscriber: Subscriber[T]) -> None:
        for fanout in self.fanouts:
            await fanout.unsubscribe(subscriber)
