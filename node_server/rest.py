"""REST for nodes that can't hold a websocket: submit a job, poll for its solutions."""

from __future__ import annotations

import asyncio

from aiohttp import web

from node_server import api_models, queries
from node_server.api import json_response
from node_server.params import ApiError, HeightSolutionsParams
from node_server.submit import RETRY_AFTER_SECONDS, RefusedJob, parse_job, submit_job
from node_server.ws import SETTINGS
from shared.db import POOL
from shared.errors import ProtocolError
from shared.protocol import now_ns


async def post_job(request: web.Request) -> web.Response:
    """POST /api/jobs: a node's job over HTTP, 202 once RabbitMQ confirmed it."""
    received_at = now_ns()
    settings = request.app[SETTINGS]
    body = await json_body(request, settings.max_message_bytes, settings.http_idle_timeout_seconds)
    try:
        job = parse_job(body, settings)
    except ProtocolError as error:
        raise ApiError(400, error.code, error.detail) from None
    try:
        # Not confirmed: PublishRefused, which `api_errors` answers with 503 from the catalogue.
        digest = await submit_job(request.app, job, received_at, settings.max_height_jump)
    except RefusedJob as refused:
        retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if refused.status == 503 else {}
        raise ApiError(refused.status, refused.code, refused.detail, retry) from None
    poll = (
        f"/api/jobs/by-height/{job.block_height}/solutions"
        f"?min_target={job.proof_target}&challenge_digest={digest}"
    )
    return json_response(
        api_models.Accepted(
            status="accepted",
            block_height=job.block_height,
            challenge_digest=digest,
            poll=poll,
        ),
        status=202,
    )


async def json_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The request body: JSON only (no cross-site form posts), at most `limit` bytes,
    refused before reading when it says it is larger, and within `timeout` seconds."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    too_large = ApiError(413, "too_large", f"body larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(limit + 1 - len(body)):
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"body not received within {timeout:g} s") from None
    return bytes(body)


async def solutions_at_height(request: web.Request, params: HeightSolutionsParams) -> web.Response:
    """Stored solutions for a height, as the workers submitted them; poll with `after`."""
    rows = await queries.solutions_at_height(
        request.app[POOL],
        params.block_height,
        params.min_target,
        params.challenge_digest,
        params.after,
        params.limit,
    )
    return json_response(
        api_models.HeightSolutions(
            block_height=params.block_height,
            solutions=[row["solution"] for row in rows],
            next_after=rows[-1]["id"] if rows else params.after,
        )
    )
