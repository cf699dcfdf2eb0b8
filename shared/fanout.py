"""Kafka to websocket fan-out, in the two modes of `fanout_mode` (docs/architecture.md, "Fan-out").

`SharedFanout`: one group-less consumer per process; each record is decoded
once (frame included) and offered to every subscriber. `PerConnectionFanout`:
each subscriber owns a consumer and decodes for itself. Subscribers apply
their own filter in `offer`, which must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.backoff import Backoff
from shared.errors import DEPENDENCY_DOWN, EVENT_STREAM_DOWN, EventStreamUnavailable, count
from shared.kafka import assign_all, new_consumer
from shared.metrics import FANOUT_LAG, FANOUT_UNDECODABLE
from shared.settings import ServiceSettings

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
PARTITION_CHECK_SECONDS = 10.0
OUTAGE_SECONDS = 2.0
LAG_INTERVAL_SECONDS = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stream(Generic[T]):
    """What a fan-out reads: a topic, how its records decode, and where to start."""

    topic: str
    decode: Callable[[bytes], T]
    # Start at the last record instead of the end: a late joiner gets the newest.
    replay_last: bool = False
    # The order in which the shared fan-out keeps the newest item for late joiners.
    newest_by: Callable[[T], int] | None = None
    # An item that replaces the newest whatever its order (a retired job's successor).
    resets: Callable[[T], bool] | None = None
    # Told of every item decoded, in both modes (for process-wide metrics); must not block.
    observe: Callable[[T], None] | None = None


class Subscriber(Protocol[T_contra]):
    def offer(self, item: T_contra) -> None: ...

    def failed(self, error: Exception) -> None:
        """`offer` raised: this subscriber gets nothing more and must end itself."""


def offered(subscriber: Subscriber[T], item: T) -> bool:
    """Offer `item`; False, and the subscriber told, when its `offer` raised.

    A bug in one subscriber must cost that subscriber, never the fan-out
    every other connection of the process depends on.
    """
    try:
        subscriber.offer(item)
    except Exception as error:
        subscriber.failed(error)
        return False
    return True


class Fanout(Protocol[T]):
    """What a websocket handler needs, whichever mode runs."""

    async def subscribe(self, subscriber: Subscriber[T]) -> None: ...

    async def unsubscribe(self, subscriber: Subscriber[T]) -> None: ...

    @property
    def ready(self) -> bool: ...


async def consume(
    consumer: AIOKafkaConsumer,
    stream: Stream[T],
    deliver: Callable[[T], None],
    on_ready: Callable[[bool], None] = lambda ready: None,
    partitions: set[int] | None = None,
    report_lag: bool = False,
) -> None:
    """Assign all partitions (following new ones), decode each record, deliver it.

    Broker outages are retried with backoff; the consumer keeps its positions,
    so connected clients resume without reconnecting. With `report_lag`, the
    records not read yet are set on `wspool_fanout_lag_records` (at most once
    every `LAG_INTERVAL_SECONDS`, after a fetch has been delivered).
    """
    backoff = Backoff()
    outages = OutageWatch()
    topic = stream.topic
    observe = stream.observe
    undecodable = FANOUT_UNDECODABLE.labels(topic=topic)  # exported at 0 from the start
    lag = FANOUT_LAG.labels(topic=topic) if report_lag else None
    next_lag = 0.0
    partitions = partitions or set()
    next_check = time.monotonic() + PARTITION_CHECK_SECONDS if partitions else 0.0
    while True:
        try:
            if not partitions or time.monotonic() >= next_check:
                partitions = await _follow_partitions(consumer, stream, partitions)
                next_check = time.monotonic() + PARTITION_CHECK_SECONDS
                on_ready(True)
            await outages.check(consumer)
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            backoff.reset()
        except EVENT_STREAM_DOWN as error:
            on_ready(False)
            count(EventStreamUnavailable)
            log.warning("fanout_consume_failed", extra={"topic": topic, "error": repr(error)})
            await backoff.sleep()
            continue
        for records in batches.values():
            for record in records:
                try:
                    item = stream.decode(record.value)
                except Exception as error:  # any bad record: count it, never stop the stream
                    undecodable.inc()
                    log.warning("fanout_record_undecodable", extra={"error": str(error)[:200]})
                    continue
                if observe is not None:
                    observe(item)
                deliver(item)
                # Let the senders write before the next record: a burst of records
                # must not pile up in one connection's bounded outbox at once.
                await asyncio.sleep(0)
        if lag is not None and time.monotonic() >= next_lag:
            next_lag = time.monotonic() + LAG_INTERVAL_SECONDS
            with contextlib.suppress(TimeoutError):  # a position being reset: next time
                async with asyncio.timeout(LAG_INTERVAL_SECONDS):
                    lag.set(await unread_records(consumer))


async def unread_records(consumer: AIOKafkaConsumer) -> int:
    """Log end minus position over the assigned partitions, from the consumer's own state.

    No request to the broker: the high-water mark comes with every fetch
    response. A partition not fetched yet counts 0; so does one whose
    high-water mark lags behind our position (Tansu, see `OutageWatch`).
    """
    unread = 0
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            unread += max(0, highwater - await consumer.position(tp))
    return unread


async def _follow_partitions(
    consumer: AIOKafkaConsumer, stream: Stream[Any], known: set[int]
) -> set[int]:
    current = consumer.partitions_for_topic(stream.topic) or set()
    if known and current <= known:
        return known
    return await assign_all(consumer, stream.topic, stream.replay_last, known)


class OutageWatch:
    """Notices when the broker lost the records behind our positions.

    A broker that comes back without its data (Tansu's memory storage, a
    rebuilt cluster) does not say so, and simply waits for our old positions
    to be refilled: records in between would be skipped. Two signs give it
    away: a partition whose log now ends before our position (seen at the
    first fetch after the restart), and a partition not fetched for
    `OUTAGE_SECONDS` (its log may have been refilled past our position in the
    meantime). Either way the partition is read again from its beginning; the
    filters drop what a client already got. Fetches run every
    `fetch_max_wait_ms`, so a healthy partition is never that stale.
    """

    def __init__(self) -> None:
        self.unreachable: set[TopicPartition] = set()
        self.reread_at: dict[TopicPartition, float] = {}

    async def check(self, consumer: AIOKafkaConsumer) -> None:
        now = time.time()
        lost = []
        for tp in consumer.assignment():
            polled = consumer.last_poll_timestamp(tp)
            if polled is None:
                continue
            if now * 1000 - polled > OUTAGE_SECONDS * 1000:
                self.unreachable.add(tp)
            elif tp in self.unreachable:
                self.unreachable.discard(tp)
                lost.append(tp)
            elif await self._past_log_end(consumer, tp, now):
                lost.append(tp)
        if lost:
            log.warning("fanout_rereading_lost_log", extra={"partitions": len(lost)})
            self.reread_at.update(dict.fromkeys(lost, now))
            await consumer.seek_to_beginning(*lost)

    async def _past_log_end(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, now: float
    ) -> bool:
        # At most once per OUTAGE_SECONDS: a broker whose high-water mark stays
        # behind what it serves (seen on Tansu right after it auto-created a
        # topic) must not turn this into a loop.
        highwater = consumer.highwater(tp)
        if highwater is None or now - self.reread_at.get(tp, 0.0) < OUTAGE_SECONDS:
            return False
        return await consumer.position(tp) > highwater


class SharedFanout(Generic[T]):
    """One consumer for the whole process; remembers the newest item for late joiners."""

    def __init__(
        self, settings: ServiceSettings, stream: Stream[T], fetch_max_wait_ms: int = 100
    ) -> None:
        self.settings = settings
        self.stream = stream
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.newest: T | None = None
        self.subscribers: set[Subscriber[T]] = set()
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    async def subscribe(self, subscriber: Subscriber[T]) -> None:
        self.subscribers.add(subscriber)
        if self.newest is not None and not offered(subscriber, self.newest):
            self.subscribers.discard(subscriber)

    async def unsubscribe(self, subscriber: Subscriber[T]) -> None:
        self.subscribers.discard(subscriber)

    def deliver(self, item: T) -> None:
        newest_by, resets = self.stream.newest_by, self.stream.resets
        if resets is not None and resets(item):
            self.newest = item
        elif newest_by is not None and (
            self.newest is None or newest_by(item) > newest_by(self.newest)
        ):
            self.newest = item
        for subscriber in list(self.subscribers):
            if not offered(subscriber, item):
                self.subscribers.discard(subscriber)

    async def run(self) -> None:
        """Consume until cancelled; owned by the application's lifecycle."""
        consumer = new_consumer(self.settings, self.fetch_max_wait_ms)
        await _start(consumer)
        try:
            await consume(consumer, self.stream, self.deliver, self._set_ready, report_lag=True)
        finally:
            self._ready = False
            await consumer.stop()

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready


class PerConnectionFanout(Generic[T]):
    """Each subscriber gets its own consumer and task: isolated, costlier."""

    def __init__(
        self, settings: ServiceSettings, stream: Stream[T], fetch_max_wait_ms: int = 100
    ) -> None:
        self.settings = settings
        self.stream = stream
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._tasks: dict[Subscriber[T], asyncio.Task[None]] = {}

    @property
    def ready(self) -> bool:
        return True  # each connection's consumer reports for itself

    async def subscribe(self, subscriber: Subscriber[T]) -> None:
        consumer = new_consumer(self.settings, self.fetch_max_wait_ms)
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
        finally:
            await consumer.stop()

    async def unsubscribe(self, subscriber: Subscriber[T]) -> None:
        task = self._tasks.pop(subscriber, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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


async def _start(consumer: AIOKafkaConsumer) -> None:
    """Start a consumer, retrying while the broker is unreachable."""
    backoff = Backoff()
    while True:
        try:
            await consumer.start()
            return
        except DEPENDENCY_DOWN as error:
            count(EventStreamUnavailable)
            log.warning("kafka_consumer_start_failed", extra={"error": repr(error)})
            await backoff.sleep()
