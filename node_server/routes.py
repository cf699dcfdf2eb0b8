"""Every HTTP route of node_server besides the websocket: one row each.

A row says how the route is served (method, path, handler, who may call it)
and how /api/openapi.json describes it (`route.Operation`): its parameters'
model is the one the server checks them with, so adding a route or a
parameter is one edit here. All of them answer on the internal port only
(`shared.runtime.listeners`); what each access level means is `node_server.access`.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web

from node_server import (
    access,
    api,
    api_models,
    dashboard,
    dashboard_models,
    dead_letters,
    fleet,
    openapi,
    params,
    rest,
    retire,
)
from node_server.route import Operation, Route
from shared.protocol import NodeJob

BAD = "Invalid parameter or body."
UNKNOWN = "No such job or worker."
DOWN = "The database or broker is unavailable; retry later."

ROUTES: list[Route] = [
    Route(
        "GET",
        "/api/openapi.json",
        openapi.serve,
        "public",
        Operation("This description.", (200, "OK", None)),
    ),
    Route(
        "GET",
        "/api/stats",
        api.stats,
        "admin",
        Operation(
            "Connected workers (cluster, from Postgres) and nodes (cluster, from the instances' "
            "heartbeats, and this process), current height, jobs and solutions in the last "
            "minute and hour.",
            (200, "OK", api_models.Stats),
            errors={503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/dashboard",
        dashboard.data,
        "admin",
        Operation(
            "Everything the dashboard shows: stats, every instance with its heartbeat, "
            "connections and closes per role, cluster-wide delivery latency quantiles, the "
            "current job and how many workers have it, per-minute jobs, solutions and worker "
            "closes for 30 minutes, the busiest workers of the last hour. Also pushed as "
            "server-sent events (`event: dashboard`) by GET /dashboard/events.",
            (200, "OK", dashboard_models.Dashboard),
            errors={503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/jobs",
        api.list_jobs,
        "admin",
        Operation(
            "Jobs, newest block height first.",
            (200, "OK", api_models.JobPage),
            params.JobsParams,
            errors={400: BAD, 503: DOWN},
        ),
    ),
    Route(
        "POST",
        "/api/jobs",
        rest.post_job,
        "node",
        Operation(
            "Submit a job like a websocket node does; poll `poll` for solutions.",
            (202, "Confirmed by RabbitMQ.", api_models.Accepted),
            body=NodeJob,
            errors={
                400: BAD,
                403: "The Origin header names a web page not in allowed_origins.",
                408: "The body did not arrive within http_idle_timeout_seconds.",
                409: "conflicting_job: another epoch_challenge holds this block height.",
                413: "Body larger than max_message_bytes.",
                415: "The body is not application/json.",
                422: "implausible_height: more than max_height_jump above the newest job.",
                503: DOWN + " Also `unavailable` when the newest job could not be read to "
                "check the height (with Retry-After): the job was not published.",
            },
        ),
    ),
    Route(
        "GET",
        "/api/jobs/by-height/{block_height}/solutions",
        rest.solutions_at_height,
        "node",
        Operation(
            "Stored solutions for a block height, oldest first, exactly the `solution` objects "
            "workers sent (node auth tokens). Poll with `after` = previous `next_after`.",
            (200, "OK", api_models.HeightSolutions),
            params.HeightSolutionsParams,
            errors={400: BAD, 503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/jobs/{task_id}",
        api.get_job,
        "admin",
        Operation(
            "One job with its solution count.",
            (200, "OK", api_models.Job),
            params.TaskParams,
            errors={400: BAD, 404: UNKNOWN, 503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/jobs/{task_id}/solutions",
        api.job_solutions,
        "admin",
        Operation(
            "A job's solutions, newest first.",
            (200, "OK", api_models.SolutionPage),
            params.TaskSolutionsParams,
            errors={400: BAD, 404: UNKNOWN, 503: DOWN},
        ),
    ),
    Route(
        "POST",
        "/api/jobs/{task_id}/retire",
        retire.retire_job,
        "admin",
        Operation(
            "Retire a job (it stays stored): every worker_server resets its workers to the "
            "newest job not retired and sends it to them.",
            (200, "Retired, and the current job announced.", api_models.Retired),
            params.TaskParams,
            errors={400: BAD, 404: UNKNOWN, 503: DOWN},
        ),
    ),
    Route(
        "POST",
        "/api/retire",
        retire.retire_above,
        "admin",
        Operation(
            "Retire every job above a block height (a chain restarted from lower heights; the "
            "jobs stay stored): every worker_server moves its workers to the newest job not "
            "retired and sends it to them.",
            (200, "Retired, and the current job announced.", api_models.RetiredAbove),
            params.RetireAboveParams,
            errors={400: BAD, 404: "No job above this height.", 503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/workers",
        api.list_workers,
        "admin",
        Operation(
            "Worker connections (one row each), newest first.",
            (200, "OK", api_models.WorkerPage),
            params.WorkersParams,
            errors={400: BAD, 503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/workers/{hardware_id}/stats",
        api.worker_stats,
        "admin",
        Operation(
            "Solutions of one hardware id within a window.",
            (200, "OK", api_models.WorkerStats),
            params.WorkerStatsParams,
            errors={400: BAD, 404: UNKNOWN, 503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/fleet",
        fleet.search,
        "admin",
        Operation(
            "Workers whose hardware id, address, caption or remote IP contains `q` (any case; "
            "in the newest 100,000 connections and every open one), one per hardware id, last "
            "seen first. Empty `q`: the most recently seen.",
            (200, "OK", api_models.Fleet),
            params.FleetParams,
            errors={400: BAD, 503: DOWN},
        ),
    ),
    Route(
        "GET",
        "/api/dead-letters",
        dead_letters.overview,
        "admin",
        Operation(
            "Per work queue: its ready messages, its dead-letter queue's, and the oldest dead "
            "letters with their reason (peeked: left in place, in order).",
            (200, "OK", api_models.DeadLetters),
            params.PeekParams,
            errors={400: BAD, 503: DOWN},
        ),
    ),
    Route(
        "POST",
        "/api/dead-letters/{queue}/requeue",
        dead_letters.requeue,
        "admin",
        Operation(
            "Move `<queue>.dead_letter` back to the work queue, each confirmed before its copy "
            "is removed; at most `limit`. Call again while `remaining` is not 0.",
            (200, "Moved.", api_models.Requeued),
            params.RequeueParams,
            errors={400: BAD, 404: "No such queue: job or solution.", 503: DOWN},
        ),
    ),
    Route(
        "POST",
        "/api/session",
        access.log_in,
        "login",
        Operation(
            "The dashboard's login: the admin token in, an HttpOnly SameSite=Strict cookie out "
            "naming a new session (12 hours, until its logout) that admin routes accept like "
            "the bearer header.",
            (200, "Logged in; the cookie is set.", api_models.Session),
            body=api_models.Login,
            errors={
                400: BAD,
                401: "Wrong admin token.",
                404: "No admin_token is set: nothing to log in to.",
                413: "Body too large.",
                415: "The body is not application/json.",
                429: "Too many wrong tokens from this address; retry after Retry-After seconds.",
            },
        ),
    ),
    Route(
        "DELETE",
        "/api/session",
        access.log_out,
        "login",
        Operation(
            "Log out: the session ends (its cookie opens nothing from now on), the cookie is "
            "cleared.",
            (200, "Logged out.", api_models.Session),
        ),
    ),
    Route("GET", "/dashboard", dashboard.page, "login"),
    Route("GET", "/dashboard/events", dashboard.events, "admin"),
]


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI description of `ROUTES`."""
    return openapi.build(ROUTES)


def add_routes(app: web.Application) -> None:
    app.middlewares.append(api.api_errors)
    app[openapi.DOCUMENT] = orjson.dumps(document())
    for route in ROUTES:
        handler = params.with_params(route.params, route.handler)
        app.router.add_route(route.method, route.path, access.guarded(route.access, handler))
