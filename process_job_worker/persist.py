"""Persist-and-broadcast for jobs: one row per block height, first one wins."""

from __future__ import annotations

import uuid

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.consumer import Delivery
from shared.kafka import JOB_TOPIC, acknowledged
from shared.metrics import BROADCAST, CURRENT_HEIGHT, DEDUP_HITS, STORED
from shared.protocol import JobMessage, JobRecord, encode

INSERT = """
INSERT INTO job (block_height, epoch_challenge, task_id)
SELECT * FROM unnest($1::bigint[], $2::jsonb[], $3::uuid[])
ON CONFLICT (block_height) DO NOTHING
RETURNING block_height
"""

NOT_BROADCAST = """
SELECT id, block_height, task_id, epoch_challenge, created_at
FROM job WHERE block_height = ANY($1::bigint[]) AND broadcast_at IS NULL
"""

MARK_BROADCAST = "UPDATE job SET broadcast_at = now() WHERE id = ANY($1::bigint[])"


async def persist_and_broadcast(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, deliveries: list[Delivery[JobMessage]]
) -> None:
    """Insert or find each height's job, produce the unbroadcast ones, then mark them.

    Safe to repeat after a crash at any step: only the missing steps run again.
    """
    first: dict[int, Delivery[JobMessage]] = {}
    for delivery in deliveries:
        first.setdefault(delivery.item.block_height, delivery)
    heights = list(first)
    task_ids = [uuid.uuid4() for _ in heights]
    async with pool.acquire() as connection:
        inserted = await connection.fetch(
            INSERT, heights, [first[h].item.epoch_challenge for h in heights], task_ids
        )
        pending = await connection.fetch(NOT_BROADCAST, heights)
    STORED.labels(kind="job").inc(len(inserted))
    DEDUP_HITS.labels(kind="job").inc(len(deliveries) - len(inserted))
    if not pending:
        return
    sends = []
    for row in pending:
        delivery = first[row["block_height"]]
        record = JobRecord(
            task_id=row["task_id"],
            # The node's own object where this batch stored it (key order intact).
            epoch_challenge=(
                delivery.item.epoch_challenge
                if row["task_id"] in task_ids
                else row["epoch_challenge"]
            ),
            block_height=row["block_height"],
            created_at=row["created_at"].timestamp(),
            received_at=delivery.received_at,
        )
        key = str(row["block_height"]).encode()
        sends.append(await producer.send(JOB_TOPIC, encode(record), key=key))
    await acknowledged(sends)
    await pool.execute(MARK_BROADCAST, [row["id"] for row in pending])
    BROADCAST.labels(kind="job").inc(len(pending))
    CURRENT_HEIGHT.set(max(heights))
