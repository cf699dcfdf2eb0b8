"""The micro-batch wire format: several messages in one AMQP body."""

from __future__ import annotations

import pytest

from shared.microbatch import (
    BATCH_CONTENT_TYPE,
    ITEMS_HEADER,
    BadBatch,
    Item,
    decode_batch,
    encode_batch,
    item_count,
)


def test_items_come_back_in_order_with_their_receipt_times() -> None:
    items = [Item(b'{"a":1}', 1), Item(b"", -5), Item(b'{"b":"\xc3\xa9"}', 2**62)]
    assert decode_batch(encode_batch(items)) == items


def test_a_truncated_body_is_refused_not_half_read() -> None:
    body = encode_batch([Item(b'{"a":1}', 1), Item(b'{"b":2}', 2)])
    for cut in (3, len(body) - 1):
        with pytest.raises(BadBatch):
            decode_batch(body[:cut])


def test_the_item_count_is_read_from_the_headers_only() -> None:
    assert item_count(BATCH_CONTENT_TYPE, {ITEMS_HEADER: 7}) == 7
    assert item_count("application/json", {ITEMS_HEADER: 7}) == 1  # a plain message
    assert item_count(BATCH_CONTENT_TYPE, {}) == 1
    assert item_count(None, None) == 1
