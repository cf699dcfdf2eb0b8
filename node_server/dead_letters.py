"""Dead letters: look at what the process workers could not decode, and requeue it.

`GET /api/dead-letters` reports, per work queue, its depth and its dead-letter
queue's depth (passive declares: nothing is created) and peeks at the oldest
dead letters. `POST /api/dead-letters/{queue}/requeue` moves them back to the
work queue once a fixed release can process them.

Admin calls are rare, so each opens its own short-lived RabbitMQ connection
instead of sharing the publisher's: nothing to keep alive or restore, and a
broker that is down is a 503 for that call only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aiohttp import web
from aiormq.exceptions import ChannelNotFoundEntity

from node_server import api_models
from node_server.api import json_response
from node_server.params import ApiError, PeekParams, RequeueParams
from node_server.ws import SETTINGS
from shared.errors import BrokerUnavailable, down_as
from shared.metrics import REQUEUED
from shared.rabbit import PUBLISH_TIMEOUT_SECONDS, REASON_HEADER
from shared.routes import ROUTES, dead_letter_queue

CONNECT_TIMEOUT_SECONDS = 5.0
PREVIEW_BYTES = 200
log = logging.getLogger(__name__)
# Each route's work queue, by the route's name in the API.
QUEUES = {kind: route.queue for kind, route in ROUTES.items()}

# Exported at 0 from start-up, like the dead-lettered count they are compared with.
for _queue in QUEUES.values():
    REQUEUED.labels(queue=_queue)


@contextlib.asynccontextmanager
async def broker(app: web.Application) -> AsyncIterator[AbstractConnection]:
    """A connection for one admin call; anything meaning RabbitMQ is down becomes a 503."""
    settings = app[SETTINGS]
    async with down_as(BrokerUnavailable):
        connection = await aio_pika.connect(
            settings.rabbitmq_url.get_secret_value(),
            timeout=CONNECT_TIMEOUT_SECONDS,
            client_properties={"connection_name": f"{settings.client_name}-admin"},
        )
        # Closing it returns every message this call holds unacked to its queue.
        async with connection:
            yield connection


async def depth(connection: AbstractConnection, name: str) -> int | None:
    """Ready messages in `name`, or None if it does not exist (the setup was not run)."""
    # A passive declare of a missing queue closes its channel: one channel each.
    async with connection.channel() as channel:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            return None
    return queue.declaration_result.message_count


async def peek(channel: AbstractChannel, name: str, count: int) -> list[api_models.DeadLetter]:
    """The oldest `count` messages of `name`, left where they were.

    RabbitMQ has no "browse", so: get them unacked, then one nack(multiple,
    requeue) returns them all, each to its place in the queue (RabbitMQ puts a
    requeued message back at its position). Held all at once, not one by one:
    a message requeued at the head would only be got again. Should this call
    fail half-way, closing the connection returns them the same way, so a peek
    never loses one. Nothing else consumes a dead-letter queue, so holding
    them for a moment hides them from no one.
    """
    queue = await channel.declare_queue(name, passive=True)
    held: list[AbstractIncomingMessage] = []
    try:
        while len(held) < count:
            message = await queue.get(no_ack=False, fail=False, timeout=PUBLISH_TIMEOUT_SECONDS)
            if message is None:
                break
            held.append(message)
    finally:
        if held:
            await held[-1].nack(multiple=True, requeue=True)
    return [_described(message) for message in held]


def reason(message: AbstractIncomingMessage) -> str | None:
    """Ours (`x-wspool-reason`), else the broker's own dead-lettering reason, if any."""
    headers = message.headers or {}
    ours = headers.get(REASON_HEADER)
    if ours is not None:
        return _text(ours)
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return _text(deaths[0].get("reason", "")) or None
    return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _described(message: AbstractIncomingMessage) -> api_models.DeadLetter:
    return api_models.DeadLetter(
        reason=reason(message),
        body_bytes=len(message.body),
        body_preview=message.body[:PREVIEW_BYTES].decode("utf-8", "replace"),
    )


async def move(channel: AbstractChannel, work_queue: str, limit: int) -> int:
    """Move up to `limit` messages from `work_queue`'s dead-letter queue back to it.

    Each is published with a confirm before its dead-letter copy is acked, so
    none is lost: a failure in between leaves it in both queues (reprocessing
    is idempotent), never in neither. Only what was there when the call began
    is moved: a message the consumer dead-letters again is not cycled.
    """
    source = await channel.declare_queue(dead_letter_queue(work_queue), passive=True)
    todo = min(limit, source.declaration_result.message_count or 0)
    moved = 0
    while moved < todo:
        message = await source.get(no_ack=False, fail=False, timeout=PUBLISH_TIMEOUT_SECONDS)
        if message is None:
            break
        await channel.default_exchange.publish(
            _again(message), routing_key=work_queue, mandatory=True, timeout=PUBLISH_TIMEOUT_SECONDS
        )
        await message.ack()
        moved += 1
        REQUEUED.labels(queue=work_queue).inc()
    return moved


def _again(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The message as first published: its old reason would only mislead."""
    headers = {k: v for k, v in (message.headers or {}).items() if k != REASON_HEADER}
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def overview(request: web.Request, params: PeekParams) -> web.Response:
    """GET /api/dead-letters."""
    queues = []
    async with broker(request.app) as connection:
        for kind, work_queue in QUEUES.items():
            dead = dead_letter_queue(work_queue)
            letters = await depth(connection, dead)
            peeked: list[api_models.DeadLetter] = []
            if letters and params.peek:
                async with connection.channel() as channel:
                    peeked = await peek(channel, dead, params.peek)
            queues.append(
                api_models.QueueDeadLetters(
                    queue=kind,
                    work_queue=work_queue,
                    ready=await depth(connection, work_queue),
                    dead_letter_queue=dead,
                    dead_letters=letters,
                    peek=peeked,
                )
            )
    return json_response(api_models.DeadLetters(queues=queues))


async def requeue(request: web.Request, params: RequeueParams) -> web.Response:
    """POST /api/dead-letters/{queue}/requeue: safe to repeat until `remaining` is 0."""
    kind = params.queue
    if kind not in QUEUES:
        raise ApiError(404, "not_found", f"no queue {kind[:40]!r}: job or solution")
    work_queue = QUEUES[kind]
    async with broker(request.app) as connection:
        async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
            moved = await move(channel, work_queue, params.limit)
        remaining = await depth(connection, dead_letter_queue(work_queue))
    log.info("dead_letters_requeued", extra={"queue": work_queue, "moved": moved})
    return json_response(api_models.Requeued(queue=kind, moved=moved, remaining=remaining or 0))
