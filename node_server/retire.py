"""Retiring jobs: the way out of a job that must not be current any more.

A job far above the chain's height (a node's bug, a test run against
production) would otherwise stay every worker's current job for good: jobs
below the current height are stored but never sent. So does a whole chain
when the real one restarts from lower heights. Retiring marks jobs in the
table (they stay there, for accounting) and tells every worker_server,
through Kafka, which job is current now: the newest one not retired, as of
Postgres's clock when it was read (the record's `received_at`, which orders
it against other retires and worker_server's own start-up read). Each moves
its workers to that job and sends it to them.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from aiohttp import web

from node_server import api_models
from node_server.api import json_response
from node_server.params import ApiError, RetireAboveParams, TaskParams
from node_server.ws import SETTINGS
from shared.codec import encode
from shared.current_job import newest_job
from shared.db import POOL
from shared.errors import EventStreamUnavailable
from shared.kafka import broadcaster
from shared.protocol import CurrentJobRecord
from shared.routes import JOB

RETIRE = (
    "UPDATE job SET retired_at = coalesce(retired_at, now()) WHERE task_id = $1 "
    "RETURNING block_height"
)
# How many it retired now, and the highest job above the height, retired before or now
# (the record names it; none: nothing was ever above the height).
RETIRE_ABOVE = """
WITH retired AS (
  UPDATE job SET retired_at = now() WHERE block_height > $1 AND retired_at IS NULL RETURNING 1
)
SELECT (SELECT count(*) FROM retired) AS retired,
       (SELECT task_id FROM job WHERE block_height > $1
        ORDER BY block_height DESC, id DESC LIMIT 1) AS highest
"""
# The broker must answer within this, or the operator is told to call again.
PRODUCE_TIMEOUT_SECONDS = 15.0


async def retire_job(request: web.Request, params: TaskParams) -> web.Response:
    """POST /api/jobs/{task_id}/retire: retire the job and tell the workers what is current.

    Safe to repeat: a job retired already is announced again (after a broker
    failure, calling again finishes the job).
    """
    task_id = params.task_id
    async with request.app[POOL].acquire() as connection, connection.transaction():
        height = await connection.fetchval(RETIRE, task_id)
        if height is None:
            raise ApiError(404, "not_found", f"no job with task_id {task_id}")
        record = await _current(connection, task_id)
    await _announce(request.app, record)
    return json_response(
        api_models.Retired(retired=task_id, block_height=height, current=_summary(record))
    )


async def retire_above(request: web.Request, params: RetireAboveParams) -> web.Response:
    """POST /api/retire?above_height=N: retire every job above N (a chain restarted
    from lower heights) and tell the workers what is current. Safe to repeat, like one."""
    above = params.above_height
    async with request.app[POOL].acquire() as connection, connection.transaction():
        row = await connection.fetchrow(RETIRE_ABOVE, above)
        if row["highest"] is None:
            raise ApiError(404, "not_found", f"no job above block height {above}")
        record = await _current(connection, row["highest"])
    await _announce(request.app, record)
    return json_response(
        api_models.RetiredAbove(
            above_height=above, retired=row["retired"], current=_summary(record)
        )
    )


async def _current(connection: asyncpg.Connection, retired: uuid.UUID) -> CurrentJobRecord:
    """What to announce: the job current once the retiring transaction commits."""
    current, as_of = await newest_job(connection)
    return CurrentJobRecord(retired=retired, current=current, received_at=as_of)


def _summary(record: CurrentJobRecord) -> api_models.CurrentJob | None:
    current = record.current
    if current is None:
        return None
    return api_models.CurrentJob(task_id=current.task_id, block_height=current.block_height)


async def _announce(app: web.Application, record: CurrentJobRecord) -> None:
    """Produce the record on topic `job`; retiring is rare, so a producer per call will do."""
    height = record.current.block_height if record.current is not None else -1
    try:
        async with asyncio.timeout(PRODUCE_TIMEOUT_SECONDS):
            async with broadcaster(app[SETTINGS]) as kafka:
                await kafka.send_all(JOB.topic, [(str(height).encode(), encode(record))])
    except TimeoutError:
        raise EventStreamUnavailable(
            "retired in the database, but the workers were not told: call again"
        ) from None
