"""Kafka: client options, the producer, topics and group-less consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from shared.backoff import Backoff
from shared.errors import EventStreamUnavailable, count, down_as
from shared.settings import KAFKA_RETENTION_MS, ServiceSettings

ACK_TIMEOUT_SECONDS = 10.0
# A process worker's batch (500 solutions of ~350 bytes) fits one produce
# request: with aiokafka's 16 KiB default it took ten, each a broker round trip.
PRODUCER_BATCH_BYTES = 256 * 1024
ADMIN_CLOSE_TIMEOUT_SECONDS = 5.0

log = logging.getLogger(__name__)


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """Bootstrap and security options, passed through to every aiokafka client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": settings.client_name,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        options["ssl_context"] = context
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


class Broadcaster:
    """What persist-and-broadcast needs of Kafka: send records, then wait for every ack.

    Kafka's failures leave it as `EventStreamUnavailable`: no caller handles aiokafka.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send_all(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
        """Produce (key, value) records in order and return once the broker acked all."""
        async with down_as(EventStreamUnavailable):
            sends = [await self._producer.send(topic, value, key=key) for key, value in records]
            await acknowledged(sends)


@contextlib.asynccontextmanager
async def broadcaster(settings: ServiceSettings) -> AsyncIterator[Broadcaster]:
    """A producer with acks="all", started once the broker answers (retried with backoff)."""
    backoff = Backoff()
    while True:
        kafka = AIOKafkaProducer(
            **client_options(settings),
            acks="all",
            linger_ms=1,
            request_timeout_ms=15000,
            max_batch_size=PRODUCER_BATCH_BYTES,
        )
        try:
            await kafka.start()
            break
        except (KafkaError, OSError) as error:
            await kafka.stop()
            count(EventStreamUnavailable)
            log.warning("kafka_producer_start_failed", extra={"error": repr(error)})
            await backoff.sleep()
    try:
        yield Broadcaster(kafka)
    finally:
        await kafka.stop()


async def acknowledged(sends: list[asyncio.Future[Any]]) -> None:
    """Wait for the broker's ack of every record sent, for a bounded time.

    A broker that restarted without its topics may leave sends unanswered:
    after `ACK_TIMEOUT_SECONDS` this raises `KafkaTimeoutError` so the caller
    retries (re-creating the topic first) instead of waiting forever.
    """
    for send in sends:
        send.add_done_callback(_retrieve)  # a late failure is not "never retrieved"
    done, pending = await asyncio.wait(sends, timeout=ACK_TIMEOUT_SECONDS)
    if pending:
        raise KafkaTimeoutError(f"{len(pending)} records not acknowledged in time")
    for send in done:
        send.result()


def _retrieve(send: asyncio.Future[Any]) -> None:
    if not send.cancelled():
        send.exception()


async def ensure_topics(
    settings: ServiceSettings,
    partitions: dict[str, int],
    retention_ms: int = KAFKA_RETENTION_MS,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics that don't exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                count,
                replication_factor,
                topic_configs={"retention.ms": str(retention_ms)},
            )
            for name, count in partitions.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [topic.name for topic in missing]
    finally:
        # Bounded: closing can hang on a broker that misbehaves, and a caller's
        # timeout has already fired by the time this runs.
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(ADMIN_CLOSE_TIMEOUT_SECONDS):
                await admin.close()


def new_consumer(settings: ServiceSettings, fetch_max_wait_ms: int = 100) -> AIOKafkaConsumer:
    """A consumer without a group: partitions are assigned by hand, offsets not committed.

    `fetch_max_wait_ms` bounds the fan-out latency on brokers that answer a
    fetch only when the wait ends rather than when data arrives (Tansu does).
    """
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        # Only used when a position falls off the log (retention, or a broker
        # that lost its data): re-read what is there, the filters drop repeats.
        auto_offset_reset="earliest",
        metadata_max_age_ms=30000,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )


async def assign_all(
    consumer: AIOKafkaConsumer, topic: str, replay_last: bool, known: set[int] | None = None
) -> set[int]:
    """Assign every partition of `topic`, starting at the end (or at the last record).

    Partitions already in `known` keep their position; new ones start from
    their beginning, so nothing produced to a fresh partition is missed.
    """
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer.topics()  # refreshes metadata: the topic may be new to this client
        partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        raise LookupError(f"Kafka topic {topic!r} does not exist (run the setup)")
    known = known or set()
    positions = {
        tp: await consumer.position(tp) for tp in consumer.assignment() if tp.partition in known
    }
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    fresh = [tp for tp in assigned if tp not in positions]
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    if known:
        await consumer.seek_to_beginning(*fresh)
        return partitions
    ends = await consumer.end_offsets(fresh)
    begins = await consumer.beginning_offsets(fresh)
    for tp in fresh:
        start = ends[tp] - 1 if replay_last else ends[tp]
        consumer.seek(tp, max(start, begins[tp]))
    return partitions
