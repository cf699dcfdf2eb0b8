"""Accepting a node's job: one path for the websocket and for `POST /api/jobs`.

A job counts as accepted only once RabbitMQ confirmed it; until then the
caller is told it was refused: `PublishRefused`, which the error catalogue
answers with 1011 on a websocket and 503 over HTTP. Refused before
publishing (`RefusedJob`, an error frame and the connection stays open): a
job far above the newest one (`ImplausibleHeight`: it would stall every
worker), one whose height another challenge holds (`ConflictingJob`: it would
be dropped as a duplicate height), and any job while the newest can't be read
(`HeightUnchecked`, `unavailable`): the guard fails closed, since the job it
waved through might be the one that stalls every worker.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from shared.codec import check_size, encode, parse
from shared.current_job import implausible_height
from shared.db import POOL
from shared.errors import DatabaseUnavailable, ErrorCode, count, down_as
from shared.metrics import REFUSED_JOBS
from shared.protocol import JobMessage, NodeJob, challenge_digest
from shared.websocket.app import PUBLISHER
from shared.websocket.settings import WebsocketServerSettings

LOOKUP_TIMEOUT_SECONDS = 2.0
# What a job refused unchecked tells the node (HTTP Retry-After): about when
# a database that missed the lookup's deadline may answer again.
RETRY_AFTER_SECONDS = 5
# The newest job not retired, and the one at this height if any: one round trip.
LOOKUP = """
SELECT (SELECT max(block_height) FROM job WHERE retired_at IS NULL) AS newest,
       held.challenge_digest, held.epoch_challenge
FROM (SELECT 1) AS one
LEFT JOIN job AS held ON held.block_height = $1 AND held.retired_at IS NULL
"""
log = logging.getLogger(__name__)


class RefusedJob(Exception):
    """A valid job that must not be published; the node is told why with `code`
    (and, over HTTP, `status`)."""

    code: ErrorCode
    status: int

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ImplausibleHeight(RefusedJob):
    """Far above the newest job: one such job would stall every worker (height poisoning)."""

    code = ErrorCode.IMPLAUSIBLE_HEIGHT
    status = 422


class ConflictingJob(RefusedJob):
    """Another challenge holds the job's block height (a fork, a misconfigured node)."""

    code = ErrorCode.CONFLICTING_JOB
    status = 409

    def __init__(self, block_height: int) -> None:
        super().__init__(f"block height {block_height} is held by another epoch_challenge")


class HeightUnchecked(RefusedJob):
    """The newest job could not be read in time: unchecked, the job is not published."""

    code = ErrorCode.UNAVAILABLE
    status = 503

    def __init__(self, block_height: int) -> None:
        super().__init__(
            f"block height {block_height} could not be checked against the newest job: "
            f"the database is unavailable, send the job again in {RETRY_AFTER_SECONDS} s"
        )


def parse_job(data: bytes, settings: WebsocketServerSettings) -> NodeJob:
    """A node's job from a frame or request body; raises `ProtocolError` when invalid."""
    return check_job(parse(NodeJob, data), settings)


def check_job(job: NodeJob, settings: WebsocketServerSettings) -> NodeJob:
    """Refuse (`ProtocolError`) a parsed job whose challenge is larger than we store."""
    check_size("epoch_challenge", job.epoch_challenge, settings.max_object_bytes)
    return job


async def submit_job(
    app: web.Application, job: NodeJob, received_at: int, max_height_jump: int
) -> str:
    """Publish the job with a confirm; returns its challenge digest.

    Raises a `RefusedJob` (nothing published) or `PublishRefused`.
    """
    digest = challenge_digest(job.epoch_challenge)
    await _check_against_stored(app, job.block_height, digest, max_height_jump)
    message = JobMessage(
        epoch_challenge=job.epoch_challenge,
        proof_target=job.proof_target,
        block_height=job.block_height,
    )
    await app[PUBLISHER].publish(encode(message), received_at)
    return digest


async def _check_against_stored(
    app: web.Application, block_height: int, digest: str, max_height_jump: int
) -> None:
    """Refuse a job far above the newest one, or at a height another challenge holds,
    or any job while Postgres can't say (`HeightUnchecked`: retry).

    The first job of an empty database is taken: there is nothing to measure it by.
    """
    try:
        # Bounded: a slow database must not hold up the node for long.
        async with down_as(DatabaseUnavailable), asyncio.timeout(LOOKUP_TIMEOUT_SECONDS):
            row = await app[POOL].fetchrow(LOOKUP, block_height)
    except DatabaseUnavailable as error:
        count(error)
        REFUSED_JOBS.labels(code=ErrorCode.UNAVAILABLE).inc()
        log.warning("job_lookup_failed", extra={"error": str(error)})
        raise HeightUnchecked(block_height) from None
    if refusal := implausible_height(block_height, row["newest"], max_height_jump):
        REFUSED_JOBS.labels(code=ErrorCode.IMPLAUSIBLE_HEIGHT).inc()
        raise ImplausibleHeight(refusal)
    if row["epoch_challenge"] is None:
        return
    held = row["challenge_digest"] or challenge_digest(row["epoch_challenge"])
    if held != digest:
        REFUSED_JOBS.labels(code=ErrorCode.CONFLICTING_JOB).inc()
        raise ConflictingJob(block_height)
