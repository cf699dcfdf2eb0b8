"""Persist-and-broadcast for solutions: one row per (task_id, nonce)."""

from __future__ import annotations

import uuid

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.consumer import Delivery
from shared.kafka import SOLUTION_TOPIC, acknowledged
from shared.metrics import BROADCAST, DEDUP_HITS, STORED
from shared.protocol import SolutionMessage, SolutionRecord, encode

# Only solutions for known tasks are stored; the others are dead-lettered.
INSERT = """
INSERT INTO solution (task_id, nonce, hardware_id, caption, solution, solution_target)
SELECT s.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bigint[])
    AS s(task_id, nonce, hardware_id, caption, solution, solution_target)
WHERE EXISTS (SELECT 1 FROM job WHERE job.task_id = s.task_id)
ON CONFLICT (task_id, nonce) DO NOTHING
RETURNING task_id, nonce
"""

FIND = """
SELECT s.id, s.task_id, s.nonce, s.broadcast_at, j.block_height
FROM unnest($1::uuid[], $2::text[]) AS k(task_id, nonce)
JOIN solution s ON s.task_id = k.task_id AND s.nonce = k.nonce
JOIN job j ON j.task_id = s.task_id
"""

MARK_BROADCAST = "UPDATE solution SET broadcast_at = now() WHERE id = ANY($1::bigint[])"


class UnknownTask(Exception):
    """The solution names a task that was never stored: it can't be accounted."""


async def persist_and_broadcast(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, deliveries: list[Delivery[SolutionMessage]]
) -> None:
    first: dict[tuple[uuid.UUID, str], Delivery[SolutionMessage]] = {}
    for delivery in deliveries:
        first.setdefault((delivery.item.task_id, delivery.item.nonce), delivery)
    keys = list(first)
    items = [first[key].item for key in keys]
    async with pool.acquire() as connection:
        inserted = await connection.fetch(
            INSERT,
            [i.task_id for i in items],
            [i.nonce for i in items],
            [i.hardware_id for i in items],
            [i.caption for i in items],
            [i.solution for i in items],
            [i.solution_target for i in items],
        )
        rows = await connection.fetch(FIND, [k[0] for k in keys], [k[1] for k in keys])
    found = {(row["task_id"], row["nonce"]) for row in rows}
    if len(found) < len(keys):
        missing = next(key for key in keys if key not in found)
        raise UnknownTask(f"unknown task {missing[0]}")
    STORED.labels(kind="solution").inc(len(inserted))
    DEDUP_HITS.labels(kind="solution").inc(len(deliveries) - len(inserted))
    pending = [row for row in rows if row["broadcast_at"] is None]
    if not pending:
        return
    sends = []
    for row in pending:
        delivery = first[(row["task_id"], row["nonce"])]
        record = SolutionRecord(
            task_id=row["task_id"],
            solution_target=delivery.item.solution_target,
            solution=delivery.item.solution,  # the worker's object, key order intact
            solution_height=row["block_height"],
            received_at=delivery.received_at,
        )
        sends.append(await producer.send(SOLUTION_TOPIC, encode(record), key=row["task_id"].bytes))
    await acknowledged(sends)
    await pool.execute(MARK_BROADCAST, [row["id"] for row in pending])
    BROADCAST.labels(kind="solution").inc(len(pending))
