"""The persist-and-broadcast service shape both process_* workers share.

An HTTP app for /healthz, /readyz and /metrics, with each pipeline (Kafka
producer, then the batch consumer of one queue) running as a background task
it owns, so the health endpoints answer while dependencies are still coming
up. What is stored and broadcast is the kind's `Persisted` (`shared.pipeline.persist`).
A service may run several pipelines (process_solution_worker: shares and
block candidates), each with its own RabbitMQ channel, prefetch and Kafka
producer, so one's backlog never holds up the other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from shared.codec import parse_internal
from shared.db import POOL
from shared.errors import DEPENDENCY_DOWN, EventStreamUnavailable
from shared.kafka import Broadcaster, broadcaster, ensure_topics
from shared.metrics import DEAD_LETTERED, DEAD_LETTERS_REFUSED
from shared.pipeline.consumer import BatchConsumer, Delivery
from shared.pipeline.persist import Persisted, persist_and_broadcast
from shared.pipeline.settings import ConsumerSettings
from shared.runtime.health import add_check, add_health_routes
from shared.runtime.instances import heartbeat
from shared.runtime.lifecycle import background, postgres, retry


@dataclass
class Pipeline:
    """One queue's messages, parsed as `message`, persisted and broadcast as `persisted`."""

    queue: str
    message: type[BaseModel]
    persisted: Persisted[Any, Any]
    # Settings this pipeline overrides (e.g. a smaller `batch_size`, `prefetch_count`).
    overrides: dict[str, Any] = field(default_factory=dict)
    consumer: BatchConsumer[Any] | None = None
    kafka: Broadcaster | None = field(default=None, repr=False)

    def decode(self, body: bytes) -> Any:
        return parse_internal(self.message, body)


PIPELINES = web.AppKey("pipelines", list)
TOPIC_CHECK_TIMEOUT_SECONDS = 10.0
PERSIST_TIMEOUT_SECONDS = 60.0
log = logging.getLogger(__name__)


def create_consumer_app(
    settings: ConsumerSettings, pipeline: Pipeline, *more: Pipeline
) -> web.Application:
    app = web.Application()
    pipelines = [pipeline, *more]
    app[PIPELINES] = pipelines
    add_health_routes(app, settings.task_failure_limit)
    app.cleanup_ctx.append(postgres(settings))
    app.cleanup_ctx.append(heartbeat(settings.module, settings.instance_name))
    for each in pipelines:
        # Exported at 0 from the start, so an alert on increase() sees the first one.
        DEAD_LETTERED.labels(queue=each.queue)
        DEAD_LETTERS_REFUSED.labels(queue=each.queue)
        name = "pipeline" if each is pipeline else f"pipeline-{each.queue}"
        own = settings.model_copy(update=each.overrides) if each.overrides else settings
        app.cleanup_ctx.append(background(name, functools.partial(_run, own, each)))
    app.on_shutdown.append(functools.partial(_stop_consuming, settings))

    async def consuming() -> bool:
        return all(p.consumer is not None and p.consumer.ready for p in pipelines)

    async def producing() -> bool:
        return all(p.kafka is not None for p in pipelines)

    add_check(app, "rabbitmq", consuming)
    add_check(app, "kafka", producing)
    return app


async def _run(settings: ConsumerSettings, pipeline: Pipeline, app: web.Application) -> None:
    topic = pipeline.persisted.topic

    async def ensure_topic() -> None:
        await ensure_topics(
            settings, {topic: settings.kafka_partitions}, settings.kafka_retention_ms
        )

    await retry("kafka_topics", ensure_topic)
    async with broadcaster(settings) as kafka:
        pipeline.kafka = kafka

        async def persist(deliveries: list[Delivery[Any]]) -> None:
            try:
                # Bounded: a stalled dependency becomes a logged, retried TimeoutError.
                async with asyncio.timeout(PERSIST_TIMEOUT_SECONDS):
                    await persist_and_broadcast(pipeline.persisted, app[POOL], kafka, deliveries)
            except EventStreamUnavailable:
                # A broker that came back empty lost the topic: re-create it, then
                # let the consumer retry the batch as for any transient failure.
                await _recreate_topic(ensure_topic)
                raise

        pipeline.consumer = BatchConsumer(settings, pipeline.queue, pipeline.decode, persist)
        try:
            await pipeline.consumer.run()
        finally:
            pipeline.kafka = None


async def _recreate_topic(ensure_topic: Callable[[], Awaitable[None]]) -> None:
    try:
        async with asyncio.timeout(TOPIC_CHECK_TIMEOUT_SECONDS):
            await ensure_topic()
    except DEPENDENCY_DOWN as error:
        log.warning("kafka_topic_check_failed", extra={"error": repr(error)})


async def _stop_consuming(settings: ConsumerSettings, app: web.Application) -> None:
    """on_shutdown: stop taking messages and let the batches in flight finish."""
    consumers = [p.consumer for p in app[PIPELINES] if p.consumer is not None]
    await asyncio.gather(*(c.stop(settings.shutdown_timeout_seconds / 2) for c in consumers))
