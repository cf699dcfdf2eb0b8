"""The read API of node_server, and what every HTTP route shares.

The routes themselves, with who may call each and the parameters each is
called with (`node_server.params`), are listed in `node_server.routes` and
the access check is `node_server.access`; REST job
submission is `node_server.rest`, the dashboard `node_server.dashboard`, the
OpenAPI document `node_server.openapi`, the bodies every route answers with
`node_server.api_models`. Here: JSON responses, the error middleware (JSON
`{"error", "detail"}` with a 4xx/503 status, never a traceback) and the read
handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from node_server import api_models, queries
from node_server.cluster import cluster
from node_server.params import (
    ApiError,
    JobsParams,
    TaskParams,
    TaskSolutionsParams,
    WorkersParams,
    WorkerStatsParams,
)
from shared.db import POOL
from shared.errors import DatabaseUnavailable, answer, count, unavailable
from shared.websocket.connection import OPEN_SOCKETS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Page = TypeVar("Page", api_models.JobPage, api_models.SolutionPage, api_models.WorkerPage)
log = logging.getLogger(__name__)


def json_response(body: api_models.Body, status: int = 200) -> web.Response:
    """A body model's JSON through orjson: datetimes as ISO 8601 with their offset."""
    return web.Response(
        body=orjson.dumps(body.model_dump(), default=str),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, error: str, detail: str) -> web.Response:
    return json_response(api_models.Error(error=error, detail=detail), status)


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /api: client mistakes and outages as JSON, logged without tracebacks."""
    if not request.path.startswith("/api"):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as error:
        response = error_response(error.status, error.error, error.detail)
        response.headers.update(error.headers)
        return response
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = error.reason.lower().replace(" ", "_")
        response = error_response(error.status, code, error.text or error.reason)
        if "Allow" in error.headers:  # a 405 names the methods the path has (RFC 9110)
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except Exception as error:
        if (outage := outage_response(request, error)) is None:
            raise
        return outage


def outage_response(request: web.Request, error: Exception) -> web.Response | None:
    """503 JSON for a dependency that is down, logged without a traceback; None for a bug."""
    # Handlers talk to Postgres, so a bare OSError or timeout is the database's.
    failure = unavailable(error, DatabaseUnavailable)
    if failure is None:
        return None
    count(failure)
    reply = answer(failure)
    log.error(
        "dependency_unavailable",
        extra={
            "path": request.path,
            "remote": request.remote,
            "dependency": reply.dependency,
            "error": str(failure),
        },
    )
    return error_response(reply.status, reply.code, reply.http_detail(failure))


def page(model: type[Page], items: list[dict[str, Any]], limit: int, cursor: str) -> Page:
    """A page and the `before` value of the next one (null on the last page)."""
    following = items[-1][cursor] if len(items) >= limit else None
    return model(items=items, next_before=following)


async def stats(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    everything = await cluster(pool)
    open_here = len(request.app[OPEN_SOCKETS])
    return json_response(await current_stats(pool, everything.connections, open_here))


async def current_stats(
    db: queries.Queryable, connections: dict[str, int], connected_here: int
) -> api_models.Stats:
    row = await queries.stats(db)
    return api_models.Stats(
        # Workers are recorded cluster-wide in Postgres; nodes by each instance's heartbeat.
        workers=api_models.WorkerCounts(connected=row["connected_workers"]),
        nodes=api_models.NodeCounts(
            connected=connections.get("node_server", 0),
            connected_here=connected_here,
        ),
        current_height=row["current_height"],
        jobs=api_models.RecentCounts(last_minute=row["jobs_minute"], last_hour=row["jobs_hour"]),
        solutions=api_models.RecentCounts(
            last_minute=row["solutions_minute"], last_hour=row["solutions_hour"]
        ),
    )


async def list_jobs(request: web.Request, params: JobsParams) -> web.Response:
    rows = await queries.jobs(request.app[POOL], params.limit, params.before)
    return json_response(page(api_models.JobPage, rows, params.limit, "block_height"))


async def get_job(request: web.Request, params: TaskParams) -> web.Response:
    job = await queries.job(request.app[POOL], params.task_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job with task_id {params.task_id}")
    return json_response(api_models.Job.model_validate(job))


async def job_solutions(request: web.Request, params: TaskSolutionsParams) -> web.Response:
    pool = request.app[POOL]
    if await queries.job(pool, params.task_id) is None:
        raise ApiError(404, "not_found", f"no job with task_id {params.task_id}")
    rows = await queries.solutions(pool, params.task_id, params.limit, params.before)
    return json_response(page(api_models.SolutionPage, rows, params.limit, "id"))


async def list_workers(request: web.Request, params: WorkersParams) -> web.Response:
    rows = await queries.workers(request.app[POOL], params.connected, params.limit, params.before)
    return json_response(page(api_models.WorkerPage, rows, params.limit, "id"))


async def worker_stats(request: web.Request, params: WorkerStatsParams) -> web.Response:
    hardware_id = params.hardware_id
    row = await queries.worker_stats(request.app[POOL], hardware_id, params.window)
    if row is None:
        raise ApiError(404, "not_found", f"no worker with hardware_id {hardware_id[:255]!r}")
    return json_response(
        api_models.WorkerStats(hardware_id=hardware_id, window_seconds=params.window, **row)
    )
