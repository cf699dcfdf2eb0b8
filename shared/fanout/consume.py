"""Reading one topic from Kafka for a fan-out: partitions, outages, lag.

`consume` assigns every partition of a stream's topic to a group-less
consumer, follows new partitions, decodes each record and delivers it, and
rides out broker outages without losing its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.backoff import Backoff
from shared.errors import DEPENDENCY_DOWN, EVENT_STREAM_DOWN, EventStreamUnavailable, count
from shared.fanout.stream import Stream
from shared.kafka import assign_all
from shared.metrics import FANOUT_LAG, FANOUT_UNDECODABLE

T = TypeVar("T")
PARTITION_CHECK_SECONDS = 10.0
OUTAGE_SECONDS = 2.0
LAG_INTERVAL_SECONDS = 1.0

log = logging.getLogger(__name__)


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


async def start_consumer(consumer: AIOKafkaConsumer) -> None:
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
