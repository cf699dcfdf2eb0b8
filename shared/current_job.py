"""The current job: the newest job in Postgres that is not retired.

worker_server loads it at start-up, node_server's retire announces it, the
dashboard shows it; all three read it here. Each answer comes with Postgres's
clock at the read, the clock that also stamps a job's `created_at`: jobs and
retires are ordered against the answer without trusting any host's clock.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from shared.protocol import JobRecord

NEWEST_JOB = """
SELECT now() AS as_of, newest.* FROM (SELECT 1) AS one LEFT JOIN (
  SELECT task_id, block_height, epoch_challenge, created_at, proof_target FROM job
  WHERE retired_at IS NULL ORDER BY block_height DESC LIMIT 1
) AS newest ON true
"""


def implausible_height(block_height: int, newest: int | None, max_jump: int) -> str | None:
    """Why a job at `block_height` must not be taken (height poisoning), or None.

    More than `max_jump` above the newest job, it would become every worker's
    current job and stall them all. With no job stored there is nothing to
    measure against: the first job is taken.
    """
    if newest is None or block_height <= newest + max_jump:
        return None
    return f"block height {block_height} is more than {max_jump} above the newest job's {newest}"


def nanoseconds(at: datetime | float) -> int:
    """A Postgres timestamp (or its Unix seconds, as records carry it) in nanoseconds."""
    seconds = at.timestamp() if isinstance(at, datetime) else at
    return round(seconds * 1_000_000) * 1000  # Postgres keeps microseconds


async def newest_job(connection: asyncpg.Connection | asyncpg.Pool) -> tuple[JobRecord | None, int]:
    """The newest job not retired (None: there is none), and when that was read (ns).

    The record's `received_at` is its `created_at`: a job read back from the
    table was received no later than it was stored.
    """
    row = await connection.fetchrow(NEWEST_JOB)
    as_of = nanoseconds(row["as_of"])
    if row["task_id"] is None:
        return None, as_of
    created_at = row["created_at"].timestamp()
    job = JobRecord(
        task_id=row["task_id"],
        epoch_challenge=row["epoch_challenge"],
        block_height=row["block_height"],
        created_at=created_at,
        received_at=nanoseconds(created_at),
        proof_target=row["proof_target"],
    )
    return job, as_of
