"""Persist-and-broadcast, written once for every kind of message.

A batch of deliveries is deduplicated on the kind's key (the first delivery
of a key wins), stored or found in Postgres, produced to Kafka where it was
not broadcast yet, and marked broadcast once the broker acked it. Only then
does the consumer ack the messages, so a crash at any step leads to a
redelivery that repeats just the missing steps: stored once, broadcast, acked
last. A kind (`process_job_worker`, `process_solution_worker`) supplies its
SQL and how to build its Kafka record, as a `Persisted`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from shared.kafka import Broadcaster
from shared.metrics import BROADCAST, DEDUP_HITS, STORED
from shared.pipeline.consumer import Delivery

M = TypeVar("M")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Persisted(Generic[M, K]):
    """What one kind of message brings to persist-and-broadcast."""

    kind: str  # `kind` label of the stored/dedup/broadcast metrics
    topic: str
    key: Callable[[M], K]  # identity of a message: one row per key
    # Stores the messages whose key has no row yet. Returns the ids of the new
    # rows, and whichever rows it can give back with `find`'s columns (a kind
    # whose insert can return them saves a lookup; the others return none).
    store: Callable[
        [asyncpg.Connection, list[M]], Awaitable[tuple[set[int], Sequence[asyncpg.Record]]]
    ]
    # The rows of these keys, each with `id` and `broadcast_at`: those `store`
    # did not give back (stored earlier, or by a concurrent batch).
    find: Callable[[asyncpg.Connection, list[K]], Awaitable[Sequence[asyncpg.Record]]]
    row_key: Callable[[asyncpg.Record], K]
    # The Kafka (key, value) of a row, from the delivery that brought it and
    # whether this batch stored it (then the message's own objects are used).
    record: Callable[[asyncpg.Record, Delivery[M], bool], tuple[bytes, bytes]]
    mark_broadcast: str  # SQL taking the row ids as $1
    # Why a key has no row after the insert (it can't be stored): raised, so the
    # consumer dead-letters that message alone.
    unstorable: Callable[[K], Exception] | None = None
    # Told the rows just marked broadcast (the job kind shows the newest height).
    on_broadcast: Callable[[list[asyncpg.Record]], None] | None = None
    # Whether a row's record is of use to anyone (None: every row's is). A row
    # that isn't is marked broadcast without a record: stored, and done.
    wanted: Callable[[asyncpg.Record], bool] | None = None


async def persist_and_broadcast(
    kind: Persisted[M, K],
    pool: asyncpg.Pool,
    kafka: Broadcaster,
    deliveries: list[Delivery[M]],
) -> None:
    """Store or find each key's row, produce the ones not broadcast yet, then mark them."""
    first: dict[K, Delivery[M]] = {}
    for delivery in deliveries:
        first.setdefault(kind.key(delivery.item), delivery)
    keys = list(first)
    async with pool.acquire() as connection:
        inserted, given = await kind.store(connection, [first[key].item for key in keys])
        rows = list(given)
        given_keys = {kind.row_key(row) for row in rows}
        if not_given := [key for key in keys if key not in given_keys]:
            # A separate statement: it sees rows a concurrent batch committed
            # after the insert's snapshot was taken.
            rows.extend(await kind.find(connection, not_given))
    found = {kind.row_key(row) for row in rows}
    missing = [key for key in keys if key not in found]
    if missing and kind.unstorable is not None:
        raise kind.unstorable(missing[0])
    STORED.labels(kind=kind.kind).inc(len(inserted))
    DEDUP_HITS.labels(kind=kind.kind).inc(len(deliveries) - len(inserted))
    pending = [row for row in rows if row["broadcast_at"] is None]
    if not pending:
        return
    wanted = pending if kind.wanted is None else [row for row in pending if kind.wanted(row)]
    if wanted:
        await kafka.send_all(
            kind.topic,
            [kind.record(row, first[kind.row_key(row)], row["id"] in inserted) for row in wanted],
        )
    await pool.execute(kind.mark_broadcast, [row["id"] for row in pending])
    BROADCAST.labels(kind=kind.kind).inc(len(wanted))
    if kind.on_broadcast is not None:
        kind.on_broadcast(pending)


def ids(rows: Sequence[Any]) -> set[int]:
    """The `id` column of rows an INSERT ... RETURNING id gave back."""
    return {row["id"] for row in rows}
