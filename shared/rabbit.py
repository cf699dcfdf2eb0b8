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
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from shared.backoff import Backoff
from shared.errors import DEPENDENCY_DOWN, BrokerUnavailable, PublishRefused, count
from shared.metrics import DEAD_LETTERED, PUBLISH_BATCH, PUBLISH_PENDING
from shared.microbatch import Item, to_message
from shared.routes import ROUTES, dead_letter_queue

REASON_HEADER = "x-wspool-reason"
PUBLISH_TIMEOUT_SECONDS = 5.0
# A batch stays well under RabbitMQ's frame size (~100 x 0.5 KiB), and a
# consumer's prefetch of N messages holds at most N x 100 solutions.
MAX_BATCH_MESSAGES = 100
# Confirms awaited at once: enough to keep the broker busy while the next
# batch fills, few enough that batches grow under load instead of multiplying.
MAX_BATCHES_IN_FLIGHT = 2
# Long enough for a first connect on a busy host, short enough for a client's timeout.
FIRST_CONNECT_GRACE_SECONDS = 2.0
RECONNECT_INTERVAL_SECONDS = 1.0
# A cancelled send has nothing left to wait for: this only bounds a stop that
# a library call ignoring cancellation would otherwise hold up.
STOP_SENDING_TIMEOUT_SECONDS = 1.0

log = logging.getLogger(__name__)


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
    for route in ROUTES.values():
        exchange = await channel.declare_exchange(
            route.exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_letter = route.dead_letter_queue
        await channel.declare_queue(dead_letter, durable=True)
        queue = await channel.declare_queue(
            route.queue,
            durable=True,
            arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead_letter,
            },
        )
        await queue.bind(exchange)


class Publisher:
    """Publishes persistent JSON to one exchange; each caller waits for its confirm.

    Callers' messages are packed into micro-batches (`shared.microbatch`):
    up to `max_in_flight` batches wait for their confirm at once, and whatever
    arrives meanwhile (at most `max_batch` messages) goes out as the next
    batch, one publish and one confirm for all of it. A lone message goes out
    at once, in the plain format. `publish` returns only once the batch
    holding its message was confirmed: nothing a caller was told is accepted
    can be lost.

    `run()` connects in the background (the service starts even while RabbitMQ
    is down). A publish while the first connection is still being made waits
    for it, for up to `FIRST_CONNECT_GRACE_SECONDS`: a client that reconnects
    the moment a restarted server listens is not refused for being early.
    Otherwise, whenever a confirm can't be had, `publish` raises
    `PublishRefused` so the client is told instead of losing the message.
    """

    def __init__(
        self,
        url: str,
        exchange_name: str,
        name: str,
        max_batch: int = MAX_BATCH_MESSAGES,
        max_in_flight: int = MAX_BATCHES_IN_FLIGHT,
    ) -> None:
        self.url = url
        self.exchange_name = exchange_name
        self.name = name
        self.max_batch = max_batch
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._first_ready = asyncio.Event()
        self._pending: list[tuple[Item, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._sending: dict[asyncio.Task[None], list[tuple[Item, asyncio.Future[None]]]] = {}
        self._batch_size = PUBLISH_BATCH.labels(exchange=exchange_name)
        self._waiting = PUBLISH_PENDING.labels(exchange=exchange_name)

    async def run(self) -> None:
        """Connect, declare, then send batches until cancelled."""
        self._connection = await connect(self.url, self.name)
        try:
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            await declare_topology(self._channel)
            self._exchange = await self._channel.get_exchange(self.exchange_name)
            log.info("rabbitmq_publisher_ready", extra={"exchange": self.exchange_name})
            self._first_ready.set()
            await self._send_batches()
        finally:
            self._exchange = None
            self._refuse_pending("publisher stopped")
            await self._stop_sending()
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
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = (Item(body, received_at), confirmed)
        if not self._pending and not self._slots.locked():
            # Nothing to batch with: send it from this task. Handing it to the
            # batching task would cost two turns of a busy event loop, which is
            # what a lone message (a block candidate) would wait for.
            await self._slots.acquire()
            await self._send([item])
        else:
            self._pending.append(item)
            self._waiting.inc()
            self._wake.set()
        await confirmed

    async def _send_batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()  # meanwhile, the next batch grows
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                self._waiting.dec(len(batch))
                task = asyncio.create_task(self._send(batch))
                self._sending[task] = batch
                task.add_done_callback(self._sending.pop)

    async def _stop_sending(self) -> None:
        """Cancel the batches waiting for their confirm; every caller of theirs is refused."""
        sending = dict(self._sending)
        for task in sending:
            task.cancel()
        if sending:
            _, stuck = await asyncio.wait(list(sending), timeout=STOP_SENDING_TIMEOUT_SECONDS)
            if stuck:
                log.warning("publisher_sends_not_stopped", extra={"tasks": len(stuck)})
        for batch in sending.values():  # a task cancelled before it ran told no one
            _settle(batch, "publisher stopped", self.exchange_name)

    async def _send(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        refusal: str | None = "publisher stopped"  # what its callers hear if cancelled
        try:
            await self._publish([item for item, _ in batch])
            refusal = None
        except Exception as error:  # a nack or a return too: the caller must be told
            refusal = f"{type(error).__name__}: {error}"
        finally:  # cancellation goes on up once the callers were told
            _settle(batch, refusal, self.exchange_name)
            self._slots.release()

    async def _publish(self, items: list[Item]) -> None:
        if self._exchange is None or not self.ready:
            raise PublishRefused("not connected to RabbitMQ", subject=self.exchange_name)
        self._batch_size.observe(len(items))
        message = to_message(items)
        try:
            await self._exchange.publish(
                message, routing_key="", mandatory=True, timeout=PUBLISH_TIMEOUT_SECONDS
            )
        except asyncio.CancelledError:
            # aiormq rejects the confirms still awaited with CancelledError when the
            # connection closes under them: that is a refusal, unless this task
            # itself is being cancelled.
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            closed = "connection closed before the confirm"
            raise PublishRefused(closed, subject=self.exchange_name) from None

    def _refuse_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, []
        self._waiting.dec(len(pending))
        _settle(pending, reason, self.exchange_name)


def _settle(
    batch: list[tuple[Item, asyncio.Future[None]]], refusal: str | None, exchange: str
) -> None:
    """Answer every caller still waiting (one that gave up has a cancelled future)."""
    for _, confirmed in batch:
        if confirmed.done():
            continue
        if refusal is None:
            confirmed.set_result(None)
        else:  # one exception each: a shared one would collect every caller's traceback
            confirmed.set_exception(PublishRefused(refusal, subject=exchange))


async def dead_letter_item(
    channel: AbstractChannel,
    queue: str,
    body: bytes,
    headers: dict[str, Any],
    content_type: str | None,
    reason: str,
) -> None:
    """Publish one bad item to `<queue>.dead_letter`; returns once RabbitMQ confirmed it.

    Mandatory and confirmed: a dead letter RabbitMQ cannot route (its queue
    deleted) comes back, and raises `PublishRefused` as a nack does, so the
    caller keeps the original unacked instead of losing it. An item of a
    micro-batch goes alone, as a plain message: the rest of its batch is
    processed as usual.
    """
    headers = {**headers, REASON_HEADER: reason[:1000]}
    target = dead_letter_queue(queue)
    confirm = await channel.default_exchange.publish(
        aio_pika.Message(
            body,
            headers=headers,
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=target,
        mandatory=True,
        timeout=PUBLISH_TIMEOUT_SECONDS,
    )
    # A returned message resolves the publish with the message itself, not an Ack.
    if not isinstance(confirm, aiormq.spec.Basic.Ack):
        raise PublishRefused(f"returned unroutable: is queue {target} declared?", subject=target)
    DEAD_LETTERED.labels(queue=queue).inc()
    log.warning("message_dead_lettered", extra={"queue": queue, "reason": reason[:200]})
