"""Persist-and-broadcast for jobs: one current row per block height, first one wins.

A retired job no longer holds its height: a new job there gets a row of its own.
The row's `proof_target` is the lowest any node sent for the height: a job
with a lower one than stored lowers it and is broadcast again (workers, who
only take higher heights, are not sent it twice; worker_server learns the
lower target, which tells block candidates from shares). Two jobs for one
height in the same batch count as one (the first), as for everything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.codec import encode
from shared.metrics import CURRENT_HEIGHT
from shared.pipeline.consumer import Delivery
from shared.pipeline.persist import Persisted, ids
from shared.protocol import JobMessage, JobRecord, challenge_digest
from shared.routes import JOB

INSERT = """
INSERT INTO job (block_height, epoch_challenge, task_id, challenge_digest, proof_target)
SELECT * FROM unnest($1::bigint[], $2::jsonb[], $3::uuid[], $4::text[], $5::bigint[])
ON CONFLICT (block_height) WHERE retired_at IS NULL DO UPDATE
    SET proof_target = EXCLUDED.proof_target, broadcast_at = NULL
    WHERE EXCLUDED.proof_target < job.proof_target
RETURNING id, xmax = 0 AS inserted
"""

FIND = """
SELECT id, block_height, task_id, epoch_challenge, created_at, broadcast_at, proof_target
FROM job WHERE block_height = ANY($1::bigint[]) AND retired_at IS NULL
"""

MARK_BROADCAST = "UPDATE job SET broadcast_at = now() WHERE id = ANY($1::bigint[])"


async def store(
    connection: asyncpg.Connection, jobs: list[JobMessage]
) -> tuple[set[int], Sequence[asyncpg.Record]]:
    rows = await connection.fetch(
        INSERT,
        [job.block_height for job in jobs],
        [job.epoch_challenge for job in jobs],
        [uuid.uuid4() for _ in jobs],
        [challenge_digest(job.epoch_challenge) for job in jobs],
        [job.proof_target for job in jobs],
    )
    # Rows whose target was lowered come back too: only new ones count as stored.
    # Jobs are few: `find` reads every row back.
    return ids([row for row in rows if row["inserted"]]), ()


async def find(connection: asyncpg.Connection, heights: list[int]) -> Sequence[asyncpg.Record]:
    return await connection.fetch(FIND, heights)


def record(
    row: asyncpg.Record, delivery: Delivery[JobMessage], stored_now: bool
) -> tuple[bytes, bytes]:
    job = JobRecord(
        task_id=row["task_id"],
        # The node's own object where this batch stored it (key order intact).
        epoch_challenge=delivery.item.epoch_challenge if stored_now else row["epoch_challenge"],
        block_height=row["block_height"],
        created_at=row["created_at"].timestamp(),
        received_at=delivery.received_at,
        proof_target=row["proof_target"],
    )
    return str(row["block_height"]).encode(), encode(job)


def show_current_height(rows: list[asyncpg.Record]) -> None:
    CURRENT_HEIGHT.set(max(row["block_height"] for row in rows))


JOBS: Persisted[JobMessage, int] = Persisted(
    kind="job",
    topic=JOB.topic,
    key=lambda job: job.block_height,
    store=store,
    find=find,
    row_key=lambda row: row["block_height"],
    record=record,
    mark_broadcast=MARK_BROADCAST,
    on_broadcast=show_current_height,
)
