"""Persist-and-broadcast for jobs: one current row per block height, first one wins.

A retired job no longer holds its height: a new job there gets a row of its own.
The row's `proof_target` is the lowest any node sent for the height: a job
with a lower one than stored lowers it and is broadcast again (workers, who
only take higher heights, are not sent it twice; worker_server learns the
lower target, which tells block candidates from shares). Two jobs for one
height in the same batch count as one (the first), as for everything else.

The height guard is checked again here, where the job is stored: a job more
than `max_height_jump` above the newest one fails its batch (`ImplausibleJob`),
and the consumer dead-letters it alone with the reason. node_server refuses
such jobs, and refuses every job it cannot check, so one here was published
by something else.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence

import asyncpg

from shared.codec import encode
from shared.current_job import implausible_height
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
# Stores of jobs (every process's) and retires take turns; readers don't wait.
LOCK = "LOCK TABLE job IN SHARE ROW EXCLUSIVE MODE"
NEWEST = "SELECT max(block_height) FROM job WHERE retired_at IS NULL"


class ImplausibleJob(Exception):
    """A job far above the newest one: stored, it would stall every worker."""


async def store(
    connection: asyncpg.Connection, jobs: list[JobMessage], max_height_jump: int
) -> tuple[set[int], Sequence[asyncpg.Record]]:
    # One transaction, under the lock: the newest read is still the newest when the
    # insert commits, so no two batches (or a retire) can pass each other's check.
    async with connection.transaction():
        await connection.execute(LOCK)
        newest = await connection.fetchval(NEWEST)
        for job in jobs:
            if refusal := implausible_height(job.block_height, newest, max_height_jump):
                raise ImplausibleJob(refusal)
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


def jobs(max_height_jump: int) -> Persisted[JobMessage, int]:
    """The job kind, refusing jobs more than `max_height_jump` above the newest."""
    return Persisted(
        kind="job",
        topic=JOB.topic,
        key=lambda job: job.block_height,
        store=functools.partial(store, max_height_jump=max_height_jump),
        find=find,
        row_key=lambda row: row["block_height"],
        record=record,
        mark_broadcast=MARK_BROADCAST,
        on_broadcast=show_current_height,
    )
