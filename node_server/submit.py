"""Accepting a node's job: one path for the websocket and for `POST /api/jobs`.

A job counts as accepted only once RabbitMQ confirmed it; until then the
caller is told it was refused (1011 on a websocket, 503 over HTTP).
"""

from __future__ import annotations

from aiohttp import web

from shared.protocol import JobMessage, NodeJob, encode
from shared.server import PUBLISHER


async def submit_job(app: web.Application, job: NodeJob, received_at: int) -> None:
    """Publish the job with a confirm; raises `PublishRefused` when it is not confirmed."""
    message = JobMessage(
        epoch_challenge=job.epoch_challenge,
        proof_target=job.proof_target,
        block_height=job.block_height,
    )
    await app[PUBLISHER].publish(encode(message), received_at)
