"""Accepting a node's job: one path for the websocket and for `POST /api/jobs`.

A job counts as accepted only once RabbitMQ confirmed it; until then the
caller is told it was refused: `PublishRefused`, which the error catalogue
answers with 1011 on a websocket and 503 over HTTP. A job whose height is
already held by another challenge is refused first (`ConflictingJob`): its
publish would be dropped as a duplicate height.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from shared.db import POOL
from shared.errors import DatabaseUnavailable, ErrorCode, count, down_as
from shared.metrics import CONFLICTING_JOBS
from shared.protocol import JobMessage, NodeJob, challenge_digest, check_size, encode, parse
from shared.settings import WebsocketServerSettings
from shared.websocket_app import PUBLISHER

LOOKUP_TIMEOUT_SECONDS = 2.0
HOLDER = "SELECT challenge_digest, epoch_challenge FROM job WHERE block_height = $1"
log = logging.getLogger(__name__)


class ConflictingJob(Exception):
    """Another challenge holds the job's block height (a fork, a misconfigured node)."""

    code = ErrorCode.CONFLICTING_JOB

    def __init__(self, block_height: int) -> None:
        self.detail = f"block height {block_height} is held by another epoch_challenge"
        super().__init__(self.detail)


def parse_job(data: bytes, settings: WebsocketServerSettings) -> NodeJob:
    """A node's job from a frame or request body; raises `ProtocolError` when invalid."""
    return check_job(parse(NodeJob, data), settings)


def check_job(job: NodeJob, settings: WebsocketServerSettings) -> NodeJob:
    """Refuse (`ProtocolError`) a parsed job whose challenge is larger than we store."""
    check_size("epoch_challenge", job.epoch_challenge, settings.max_object_bytes)
    return job


async def submit_job(app: web.Application, job: NodeJob, received_at: int) -> str:
    """Publish the job with a confirm; returns its challenge digest.

    Raises `ConflictingJob` (nothing published) or `PublishRefused`.
    """
    digest = challenge_digest(job.epoch_challenge)
    if await _held_by_another(app, job.block_height, digest):
        CONFLICTING_JOBS.inc()
        raise ConflictingJob(job.block_height)
    message = JobMessage(
        epoch_challenge=job.epoch_challenge,
        proof_target=job.proof_target,
        block_height=job.block_height,
    )
    await app[PUBLISHER].publish(encode(message), received_at)
    return digest


async def _held_by_another(app: web.Application, block_height: int, digest: str) -> bool:
    """True when the stored job of this height has another challenge.

    Unknown while Postgres is away: the job is published, and the digest on
    each solution still keeps another challenge's solutions from the node.
    """
    try:
        # Bounded: a slow database must not hold up the job itself.
        async with down_as(DatabaseUnavailable), asyncio.timeout(LOOKUP_TIMEOUT_SECONDS):
            row = await app[POOL].fetchrow(HOLDER, block_height)
    except DatabaseUnavailable as error:
        count(error)
        log.warning("job_holder_lookup_failed", extra={"error": str(error)})
        return False
    if row is None:
        return False
    held = row["challenge_digest"] or challenge_digest(row["epoch_challenge"])
    return bool(held != digest)
