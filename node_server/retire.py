"""Retiring a job: the way out of a job that must not be current any more.

A job far above the chain's height (a node's bug, a test run against
production) would otherwise stay every worker's newest job for good: their
"newer heights only" filters refuse every real job after it. Retiring marks
it in the table (it stays there, for accounting) and tells every
worker_server, through Kafka, which job is current now: the newest one not
retired. Each resets its workers' filters to that job and sends it to them.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from node_server import api_models, params
from node_server.api import json_response
from node_server.params import ApiError
from node_server.ws import SETTINGS
from shared.codec import encode
from shared.db import POOL
from shared.errors import EventStreamUnavailable
from shared.kafka import broadcaster
from shared.protocol import CurrentJobRecord, JobRecord, now_ns
from shared.routes import JOB

RETIRE = (
    "UPDATE job SET retired_at = coalesce(retired_at, now()) WHERE task_id = $1 "
    "RETURNING block_height"
)
CURRENT = """
SELECT task_id, block_height, epoch_challenge, created_at, proof_target FROM job
WHERE retired_at IS NULL ORDER BY block_height DESC LIMIT 1
"""
# The broker must answer within this, or the operator is told to call again.
PRODUCE_TIMEOUT_SECONDS = 15.0


async def retire_job(request: web.Request) -> web.Response:
    """POST /api/jobs/{task_id}/retire: retire the job and tell the workers what is current.

    Safe to repeat: a job retired already is announced again (after a broker
    failure, calling again finishes the job).
    """
    task_id = params.task_id(request)
    async with request.app[POOL].acquire() as connection, connection.transaction():
        height = await connection.fetchval(RETIRE, task_id)
        if height is None:
            raise ApiError(404, "not_found", f"no job with task_id {task_id}")
        row = await connection.fetchrow(CURRENT)
    current = None
    if row is not None:
        current = JobRecord(
            task_id=row["task_id"],
            epoch_challenge=row["epoch_challenge"],
            block_height=row["block_height"],
            created_at=row["created_at"].timestamp(),
            received_at=now_ns(),
            proof_target=row["proof_target"],
        )
    record = CurrentJobRecord(retired=task_id, current=current, received_at=now_ns())
    await _announce(request.app, record)
    return json_response(
        api_models.Retired(
            retired=task_id,
            block_height=height,
            current=None
            if current is None
            else api_models.CurrentJob(task_id=current.task_id, block_height=current.block_height),
        )
    )


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
