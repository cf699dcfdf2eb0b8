"""The micro-batch wire format: several messages in one AMQP body."""

from __future__ import annotations

import aio_pika
import pytest

from shared.microbatch import (
    BATCH_CONTENT_TYPE,
    ITEMS_HEADER,
    RECEIVED_AT_HEADER,
    BadBatch,
    Item,
    decode_batch,
    encode_batch,
    item_count,
    items,
    to_message,
)


def test_items_come_back_in_order_with_their_receipt_times() -> None:
    batch = [Item(b'{"a":1}', 1), Item(b"", -5), Item(b'{"b":"\xc3\xa9"}', 2**62)]
    assert decode_batch(encode_batch(batch)) == batch


def test_a_truncated_body_is_refused_not_half_read() -> None:
    body = encode_batch([Item(b'{"a":1}', 1), Item(b'{"b":2}', 2)])
    for cut in (3, len(body) - 1):
        with pytest.raises(BadBatch):
            decode_batch(body[:cut])


def message(content_type: str | None, headers: dict[str, object] | None) -> aio_pika.Message:
    return aio_pika.Message(b"", content_type=content_type, headers=headers)


def test_the_item_count_is_read_from_the_headers_only() -> None:
    assert item_count(message(BATCH_CONTENT_TYPE, {ITEMS_HEADER: 7})) == 7
    assert item_count(message("application/json", {ITEMS_HEADER: 7})) == 1  # a plain message
    assert item_count(message(BATCH_CONTENT_TYPE, {})) == 1
    assert item_count(message(None, None)) == 1


def test_a_message_carries_its_items_and_each_item_its_receipt_time() -> None:
    batch = [Item(b'{"a":1}', 11), Item(b'{"b":2}', 12), Item(b'{"c":3}', 13)]
    packed = to_message(batch)
    assert (packed.content_type, item_count(packed)) == (BATCH_CONTENT_TYPE, 3)
    assert items(packed) == [(item, {RECEIVED_AT_HEADER: item.received_at}) for item in batch]
    # A lone item goes out plain, as older publishers sent every message.
    lone = to_message(batch[:1])
    assert (lone.content_type, lone.body) == ("application/json", b'{"a":1}')
    assert items(lone) == [(batch[0], {RECEIVED_AT_HEADER: 11})]


def test_a_plain_message_keeps_its_headers_and_may_lack_a_receipt_time() -> None:
    plain = message("application/json", {"x-other": "kept"})
    assert items(plain) == [(Item(b"", 0), {"x-other": "kept"})]
    with pytest.raises(BadBatch):
        items(aio_pika.Message(b"\x00\x01", content_type=BATCH_CONTENT_TYPE))
