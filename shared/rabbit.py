"""RabbitMQ: topology, a confirming publisher, and dead-lettering.

Exchanges are durable fanouts; each has one durable work queue that
dead-letters to `<queue>.dead_letter`. Declaring is idempotent, so every
service declares what it uses at start-up as well as the setup script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from shared.backoff import Backoff
from shared.errors import DEPENDENCY_DOWN, BrokerUnavailable, PublishRefused, count
from shared.metrics import DEAD_LETTERED

JOB_EXCHANGE = "job"
SOLUTION_EXCHANGE = "solution"
JOB_QUEUE = "job.persist_and_broadcast"
SOLUTION_QUEUE = "solution.persist_and_broadcast"
QUEUES = {JOB_EXCHANGE: JOB_QUEUE, SOLUTION_EXCHANGE: SOLUTION_QUEUE}
RECEIVED_AT_HEADER = "received_at"
REASON_HEADER = "x-wspool-reason"
PUBLISH_TIMEOUT_SECONDS = 5.0
# Long enough for a first connect on a busy host, short enough for a client's timeout.
FIRST_CONNECT_GRACE_SECONDS = 2.0
RECONNECT_INTERVAL_SECONDS = 1.0

log = logging.getLogger(__name__)


__all__ = ["PublishRefused"]  # defined with the other failures in shared.errors


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead_letter"


async def connect(url: str, name: str) -> AbstractRobustConnection:
    """A robust connection, retried with backoff until the broker answers.

    `name` is the connection name RabbitMQ shows (management UI, `rabbitmqctl`).

    Once connected, aio-pika reconnects by itself and restores the channels,
    exchanges and consumers this process holds references to.
    """
    backoff = Backoff()
    while True:
        try:
            return await aio_pika.connect_robust(
                url,
                timeout=10,
                # Reconnect soon after a broker restart (aio-pika waits 5 s by default).
                reconnect_interval=RECONNECT_INTERVAL_SECONDS,
                client_properties={"connection_name": name},
            )
        except DEPENDENCY_DOWN as error:
            count(BrokerUnavailable)
            log.warning("rabbitmq_connect_failed", extra={"error": repr(error)})
            await backoff.sleep()


async def declare_topology(channel: AbstractChannel) -> None:
    """Exchanges, work queues and dead-letter queues, all durable."""
    for exchange_name, queue_name in QUEUES.items():
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_letter = dead_letter_queue(queue_name)
        await channel.declare_queue(dead_letter, durable=True)
        queue = await channel.declare_queue(
            queue_name,
            durable=True,
            arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead_letter,
            },
        )
        await queue.bind(exchange)


class Publisher:
    """Publishes persistent JSON to one exchange and waits for the broker's confirm.

    `run()` connects in the background (the service starts even while RabbitMQ
    is down). A publish while the first connection is still being made waits
    for it, for up to `FIRST_CONNECT_GRACE_SECONDS`: a client that reconnects
    the moment a restarted server listens is not refused for being early.
    Otherwise, whenever a confirm can't be had, `publish` raises
    `PublishRefused` so the client is told instead of losing the message.
    """

    def __init__(self, url: str, exchange_name: str, name: str) -> None:
        self.url = url
        self.exchange_name = exchange_name
        self.name = name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._first_ready = asyncio.Event()

    async def run(self) -> None:
        """Connect, declare, then hold the connection until cancelled."""
        self._connection = await connect(self.url, self.name)
        try:
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            await declare_topology(self._channel)
            self._exchange = await self._channel.get_exchange(self.exchange_name)
            log.info("rabbitmq_publisher_ready", extra={"exchange": self.exchange_name})
            self._first_ready.set()
            await asyncio.Future()  # until cancelled
        finally:
            self._exchange = None
            await self._connection.close()

    @property
    def ready(self) -> bool:
        return (
            self._exchange is not None
            and self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def publish(self, body: bytes, received_at: int) -> None:
        """Publish and wait for the confirm; raise `PublishRefused` otherwise.

        The refusal names the exchange ("job not accepted: ..."); whoever
        answers the client counts it (`shared.errors.count`).
        """
        if not self._first_ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_ready.wait(), FIRST_CONNECT_GRACE_SECONDS)
        if self._exchange is None or not self.ready:
            raise PublishRefused("not connected to RabbitMQ", subject=self.exchange_name)
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={RECEIVED_AT_HEADER: received_at},
        )
        try:
            await self._exchange.publish(
                message, routing_key="", mandatory=True, timeout=PUBLISH_TIMEOUT_SECONDS
            )
        except DEPENDENCY_DOWN as error:
            raise PublishRefused(
                f"{type(error).__name__}: {error}", subject=self.exchange_name
            ) from error


async def dead_letter(
    channel: AbstractChannel, queue: str, message: AbstractIncomingMessage, reason: str
) -> None:
    """Move a message we can't process to `<queue>.dead_letter`, reason in a header.

    Published with a confirm before the original is acked, so it is never lost.
    """
    headers: dict[str, Any] = dict(message.headers or {})
    headers[REASON_HEADER] = reason[:1000]
    await channel.default_exchange.publish(
        aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=dead_letter_queue(queue),
        timeout=PUBLISH_TIMEOUT_SECONDS,
    )
    await message.ack()
    DEAD_LETTERED.labels(queue=queue).inc()
    log.warning("message_dead_lettered", extra={"queue": queue, "reason": reason[:200]})


def received_at(message: AbstractIncomingMessage) -> int | None:
    value = (message.headers or {}).get(RECEIVED_AT_HEADER)
    return value if isinstance(value, int) else None
