"""Accepting a node's job: one path for the websocket and for `POST /api/jobs`.

A job counts as accepted only once RabbitMQ confirmed it; until then the
caller is told it was refused: `PublishRefused`, which the error catalogue
answers with 1011 on a websocket and 503 over HTTP.
"""

from __future__ import annotations

from aiohttp import web

from shared.protocol import JobMessage, NodeJob, check_size, encode, parse
from shared.settings import WebsocketServerSettings
from shared.websocket_app import PUBLISHER


def parse_job(data: bytes, settings: WebsocketServerSettings) -> NodeJob:
    """A node's job from a frame or request body; raises `ProtocolError` when invalid."""
    return check_job(parse(NodeJob, data), settings)


def check_job(job: NodeJob, settings: WebsocketServerSettings) -> NodeJob:
    """Refuse (`ProtocolError`) a parsed job whose challenge is larger than we store."""
    check_size("epoch_challenge", job.epoch_challenge, settings.max_object_bytes)
    return job


async def submit_job(app: web.Application, job: NodeJob, received_at: int) -> None:
    """Publish the job with a confirm; raises `PublishRefused` when it is not confirmed."""
    message = JobMessage(
        epoch_challenge=job.epoch_challenge,
        proof_target=job.proof_target,
        block_height=job.block_height,
    )
    await app[PUBLISHER].publish(encode(message), received_at)
