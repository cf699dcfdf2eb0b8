"""Persist-and-broadcast for solutions: one row per (task_id, nonce).

Only solutions some node may wait for are produced to Kafka: a share (below
the lowest proof target sent for its height) is stored already marked
broadcast, never produced, so shares cost node_server nothing and can't fill the
partitions candidates travel through. A node that later sends a lower target
for the height gets the shares it now wants from Postgres (recovery).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

import asyncpg

from shared.codec import encode
from shared.pipeline.consumer import Delivery
from shared.pipeline.persist import Persisted, ids
from shared.protocol import SolutionMessage, SolutionRecord
from shared.routes import CANDIDATE, SOLUTION

Key = tuple[uuid.UUID, str]  # (task_id, nonce)

# One statement stores a batch and gives back what its Kafka records need.
# Only solutions for known tasks are stored (the others are dead-lettered). A
# share is stored already marked broadcast: it is never produced, so it costs
# no second write. The columns are FIND's.
STORE = """
WITH stored AS (
    INSERT INTO solution
        (task_id, nonce, hardware_id, caption, solution, solution_target, broadcast_at)
    SELECT s.task_id, s.nonce, s.hardware_id, s.caption, s.solution, s.solution_target,
        CASE WHEN s.solution_target < j.proof_target THEN now() END
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bigint[])
        AS s(task_id, nonce, hardware_id, caption, solution, solution_target)
    JOIN job j ON j.task_id = s.task_id
    ON CONFLICT (task_id, nonce) DO NOTHING
    RETURNING id, task_id, nonce, broadcast_at, solution_target
)
SELECT s.id, s.task_id, s.nonce, s.broadcast_at, s.solution_target,
    j.block_height, j.challenge_digest, j.proof_target
FROM stored s JOIN job j ON j.task_id = s.task_id
"""

# Solutions the batch did not store: sent before, or by the other lane.
FIND = """
SELECT s.id, s.task_id, s.nonce, s.broadcast_at, s.solution_target,
    j.block_height, j.challenge_digest, j.proof_target
FROM unnest($1::uuid[], $2::text[]) AS k(task_id, nonce)
JOIN solution s ON s.task_id = k.task_id AND s.nonce = k.nonce
JOIN job j ON j.task_id = s.task_id
"""

MARK_BROADCAST = "UPDATE solution SET broadcast_at = now() WHERE id = ANY($1::bigint[])"


class UnknownTask(Exception):
    """The solution names a task that was never stored: it can't be accounted."""


async def store(
    connection: asyncpg.Connection, solutions: list[SolutionMessage]
) -> tuple[set[int], Sequence[asyncpg.Record]]:
    rows = await connection.fetch(
        STORE,
        [s.task_id for s in solutions],
        [s.nonce for s in solutions],
        [s.hardware_id for s in solutions],
        [s.caption for s in solutions],
        [s.solution for s in solutions],
        [s.solution_target for s in solutions],
    )
    return ids(rows), rows


async def find(connection: asyncpg.Connection, keys: list[Key]) -> Sequence[asyncpg.Record]:
    return await connection.fetch(FIND, [key[0] for key in keys], [key[1] for key in keys])


def record(
    row: asyncpg.Record, delivery: Delivery[SolutionMessage], _stored_now: bool
) -> tuple[bytes, bytes]:
    solution = SolutionRecord.model_construct(  # from the stored row and a validated item
        task_id=row["task_id"],
        solution_target=delivery.item.solution_target,
        solution=delivery.item.solution,  # the worker's object, key order intact
        solution_height=row["block_height"],
        received_at=delivery.received_at,
        challenge_digest=row["challenge_digest"],
    )
    return row["task_id"].bytes, encode(solution)


def wanted(row: asyncpg.Record) -> bool:
    """Could a node wait for it: at or above the job's target, or the target not known."""
    return row["proof_target"] is None or row["solution_target"] >= row["proof_target"]


SOLUTIONS: Persisted[SolutionMessage, Key] = Persisted(
    kind="solution",
    topic=SOLUTION.topic,
    key=lambda solution: (solution.task_id, solution.nonce),
    store=store,
    find=find,
    row_key=lambda row: (row["task_id"], row["nonce"]),
    record=record,
    mark_broadcast=MARK_BROADCAST,
    unstorable=lambda key: UnknownTask(f"unknown task {key[0]}"),
    wanted=wanted,
)

# The candidate lane: the same rows (a solution sent down both lanes is stored
# once, broadcast once) and metrics (`kind="solution"`: rows of one table),
# produced to a topic of their own.
CANDIDATES: Persisted[SolutionMessage, Key] = dataclasses.replace(SOLUTIONS, topic=CANDIDATE.topic)
