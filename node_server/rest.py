"""REST for nodes that can't hold a websocket: submit a job, poll for its solutions."""

from __future__ import annotations

from aiohttp import web

from node_server import params, queries
from node_server.api import json_response
from node_server.params import ApiError
from node_server.submit import ConflictingJob, parse_job, submit_job
from node_server.ws import SETTINGS
from shared.db import POOL
from shared.protocol import ProtocolError, now_ns


async def post_job(request: web.Request) -> web.Response:
    """POST /api/jobs: a node's job over HTTP, 202 once RabbitMQ confirmed it."""
    received_at = now_ns()
    settings = request.app[SETTINGS]
    body = await request.read()
    if len(body) > settings.max_message_bytes:
        raise ApiError(413, "too_large", f"body larger than {settings.max_message_bytes} bytes")
    try:
        job = parse_job(body, settings)
    except ProtocolError as error:
        raise ApiError(400, error.code, error.detail) from None
    try:
        # Not confirmed: PublishRefused, which `api_errors` answers with 503 from the catalogue.
        digest = await submit_job(request.app, job, received_at)
    except ConflictingJob as conflict:
        raise ApiError(409, conflict.code, conflict.detail) from None
    poll = (
        f"/api/jobs/by-height/{job.block_height}/solutions"
        f"?min_target={job.proof_target}&challenge_digest={digest}"
    )
    return json_response(
        {
            "status": "accepted",
            "block_height": job.block_height,
            "challenge_digest": digest,
            "poll": poll,
        },
        status=202,
    )


async def solutions_at_height(request: web.Request) -> web.Response:
    """Stored solutions for a height, as the workers submitted them; poll with `after`."""
    height = params.path_integer(request, "block_height")
    min_target = params.integer(request, "min_target", 0)
    after = params.integer(request, "after", 0)
    digest = params.challenge_digest(request)
    limit = params.limit(request)
    rows = await queries.solutions_at_height(
        request.app[POOL], height, min_target, digest, after, limit
    )
    return json_response(
        {
            "block_height": height,
            "solutions": [row["solution"] for row in rows],
            "next_after": rows[-1]["id"] if rows else after,
        }
    )
