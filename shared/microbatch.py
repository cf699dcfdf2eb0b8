"""Several messages in one AMQP message: the publisher's micro-batches.

Per AMQP message, aio-pika spent three quarters of worker_server's CPU per
solution (three frames built and written, a confirm future), RabbitMQ ~0.4 ms
(persistence, confirm, delivery, ack) and the process worker a fifth of its
CPU reading frames. Those costs are per message, not per byte, so the
publisher packs what its callers hand it while earlier batches wait for their
confirm into one message: under load they share one publish and one confirm.

The body is a run of items, each `received_at` (8 bytes, signed, big-endian),
the length of its JSON (4 bytes, unsigned) and the JSON itself; the message
has content type `BATCH_CONTENT_TYPE` and the item count in `ITEMS_HEADER`. A
message of another content type is one item, its `received_at` in the
`RECEIVED_AT_HEADER` header: what a lone message is published as, and what
older publishers sent, so a consumer reads both.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractMessage

BATCH_CONTENT_TYPE = "application/x-wspool-batch"
ITEMS_HEADER = "x-wspool-items"
RECEIVED_AT_HEADER = "received_at"
_ITEM_HEAD = struct.Struct(">qI")


@dataclass(frozen=True, slots=True)
class Item:
    body: bytes
    received_at: int


class BadBatch(ValueError):
    """The body is not a well-formed run of items."""


def encode_batch(items: Sequence[Item]) -> bytes:
    parts: list[bytes] = []
    for item in items:
        parts.append(_ITEM_HEAD.pack(item.received_at, len(item.body)))
        parts.append(item.body)
    return b"".join(parts)


def decode_batch(body: bytes) -> list[Item]:
    items: list[Item] = []
    view, offset, end = memoryview(body), 0, len(body)
    while offset < end:
        if offset + _ITEM_HEAD.size > end:
            raise BadBatch(f"truncated item head at byte {offset}")
        received_at, length = _ITEM_HEAD.unpack_from(view, offset)
        offset += _ITEM_HEAD.size
        if offset + length > end:
            raise BadBatch(f"item of {length} bytes runs past the end at byte {offset}")
        items.append(Item(bytes(view[offset : offset + length]), received_at))
        offset += length
    return items


def to_message(items: Sequence[Item]) -> aio_pika.Message:
    """One persistent AMQP message carrying `items`: a lone one in the plain format."""
    if len(items) == 1:
        body, content_type = items[0].body, "application/json"
        headers: dict[str, Any] = {RECEIVED_AT_HEADER: items[0].received_at}
    else:
        body, content_type = encode_batch(items), BATCH_CONTENT_TYPE
        headers = {ITEMS_HEADER: len(items)}
    return aio_pika.Message(
        body,
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers,
    )


def items(message: AbstractMessage) -> list[tuple[Item, dict[str, Any]]]:
    """The items one AMQP message carries, each with the headers it travelled with.

    Raises `BadBatch` for a micro-batch whose body is not well formed.
    """
    if message.content_type == BATCH_CONTENT_TYPE:
        return [
            (item, {RECEIVED_AT_HEADER: item.received_at}) for item in decode_batch(message.body)
        ]
    headers = dict(message.headers or {})
    received_at = headers.get(RECEIVED_AT_HEADER)
    return [(Item(message.body, received_at if isinstance(received_at, int) else 0), headers)]


def item_count(message: AbstractMessage) -> int:
    """How many items a message holds, without reading its body."""
    if message.content_type != BATCH_CONTENT_TYPE:
        return 1
    count = (message.headers or {}).get(ITEMS_HEADER)
    return count if isinstance(count, int) and count > 0 else 1
