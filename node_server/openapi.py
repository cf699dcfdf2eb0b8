"""OpenAPI 3.1 description of node_server's HTTP API, served at /api/openapi.json.

Generated: the paths and methods from the route list (`node_server.routes`),
each route's security and token answers (401, 403) from its access level, and
every body schema from the pydantic models the handlers answer with
(`node_server.api_models`; the request of `POST /api/jobs` is the websocket's
`shared.protocol.NodeJob`). Written here, per operation: its summary, its
parameters, its success model and the other statuses it may answer with.
A route without an entry below fails the document, hence the tests.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from node_server import api_models, dead_letters, fleet
from node_server.params import DEFAULT_LIMIT, MAX_LIMIT
from shared.protocol import NodeJob
from shared.routes import ROUTES

REF = "#/components/schemas/{model}"
INT64 = TypeAdapter(api_models.Int64).json_schema()
UUID = TypeAdapter(uuid.UUID).json_schema()
DIGEST = TypeAdapter(api_models.Digest).json_schema()

BAD = "Invalid parameter or body."
UNKNOWN = "No such job or worker."
DOWN = "The database or broker is unavailable; retry later."
# What each access level (`node_server.routes`) adds to a route.
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "admin": [{"admin": []}, {"session": []}],
    "node": [{"node": []}],
    "login": [],
    "public": [],
}
NOT_LOCAL = "No admin_token is set and the caller is not on this machine."
TOKEN_ANSWERS: dict[str, dict[int, str]] = {
    "admin": {
        401: "The admin token is required (bearer header or the login cookie, never ?token=).",
        403: NOT_LOCAL,
    },
    "node": {401: "A node token is required (header or ?token=)."},
    "login": {403: NOT_LOCAL},
    "public": {},
}


@dataclass(frozen=True)
class Operation:
    summary: str
    # The success status and its body; None: any JSON object.
    ok: tuple[int, str, type[BaseModel] | None]
    parameters: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    body: type[BaseModel] | None = None


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _integer(name: str, low: int, high: int, default: int, description: str) -> dict[str, Any]:
    schema = {"type": "integer", "minimum": low, "maximum": high, "default": default}
    return _query(name, schema, description)


LIMIT = _integer("limit", 1, MAX_LIMIT, DEFAULT_LIMIT, "Page size.")
BEFORE_ID = _query("before", INT64, "Cursor: `next_before` of the previous page (an id).")
TASK_ID = _path("task_id", UUID)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/api/openapi.json"): Operation("This description.", (200, "OK", None)),
    ("GET", "/api/stats"): Operation(
        "Connected workers (cluster, from Postgres) and nodes (cluster, from the instances' "
        "heartbeats, and this process), current height, jobs and solutions in the last "
        "minute and hour.",
        (200, "OK", api_models.Stats),
        errors={503: DOWN},
    ),
    ("GET", "/api/dashboard"): Operation(
        "Everything the dashboard shows: stats, every instance with its heartbeat, "
        "connections and closes per role, cluster-wide delivery latency quantiles, the "
        "current job and how many workers have it, per-minute jobs, solutions and worker "
        "closes for 30 minutes, the busiest workers of the last hour. Also pushed as "
        "server-sent events (`event: dashboard`) by GET /dashboard/events.",
        (200, "OK", api_models.Dashboard),
        errors={503: DOWN},
    ),
    ("GET", "/api/jobs"): Operation(
        "Jobs, newest block height first.",
        (200, "OK", api_models.JobPage),
        [LIMIT, _query("before", INT64, "Cursor: a block height (exclusive).")],
        {400: BAD, 503: DOWN},
    ),
    ("POST", "/api/jobs"): Operation(
        "Submit a job like a websocket node does; poll `poll` for solutions.",
        (202, "Confirmed by RabbitMQ.", api_models.Accepted),
        errors={
            400: BAD,
            408: "The body did not arrive within http_idle_timeout_seconds.",
            409: "conflicting_job: another epoch_challenge holds this block height.",
            413: "Body larger than max_message_bytes.",
            415: "The body is not application/json.",
            422: "implausible_height: more than max_height_jump above the newest job.",
            503: DOWN,
        },
        body=NodeJob,
    ),
    ("GET", "/api/jobs/by-height/{block_height}/solutions"): Operation(
        "Stored solutions for a block height, oldest first, exactly the `solution` objects "
        "workers sent (node auth tokens). Poll with `after` = previous `next_after`.",
        (200, "OK", api_models.HeightSolutions),
        [
            _path("block_height", INT64),
            _query("min_target", INT64, "Only solutions with solution_target >= this."),
            _query("after", INT64, "Cursor: solutions with a larger id."),
            _query(
                "challenge_digest",
                DIGEST,
                "Only if the height's job has this challenge (as `POST /api/jobs` returns).",
            ),
            LIMIT,
        ],
        {400: BAD, 503: DOWN},
    ),
    ("GET", "/api/jobs/{task_id}"): Operation(
        "One job with its solution count.",
        (200, "OK", api_models.Job),
        [TASK_ID],
        {400: BAD, 404: UNKNOWN, 503: DOWN},
    ),
    ("GET", "/api/jobs/{task_id}/solutions"): Operation(
        "A job's solutions, newest first.",
        (200, "OK", api_models.SolutionPage),
        [TASK_ID, LIMIT, BEFORE_ID],
        {400: BAD, 404: UNKNOWN, 503: DOWN},
    ),
    ("POST", "/api/jobs/{task_id}/retire"): Operation(
        "Retire a job (it stays stored): every worker_server resets its workers to the "
        "newest job not retired and sends it to them.",
        (200, "Retired, and the current job announced.", api_models.Retired),
        [TASK_ID],
        {400: BAD, 404: UNKNOWN, 503: DOWN},
    ),
    ("POST", "/api/jobs/retire"): Operation(
        "Retire every job above a block height (a chain restarted from lower heights; the "
        "jobs stay stored): every worker_server moves its workers to the newest job not "
        "retired and sends it to them.",
        (200, "Retired, and the current job announced.", api_models.RetiredAbove),
        [{**_query("above_height", INT64, "Retire the jobs above this height."), "required": True}],
        {400: BAD, 404: "No job above this height.", 503: DOWN},
    ),
    ("GET", "/api/workers"): Operation(
        "Worker connections (one row each), newest first.",
        (200, "OK", api_models.WorkerPage),
        [
            _query("connected", {"type": "boolean"}, "Only open (true) or closed (false)."),
            LIMIT,
            BEFORE_ID,
        ],
        {400: BAD, 503: DOWN},
    ),
    ("POST", "/api/session"): Operation(
        "The dashboard's login: the admin token in, an HttpOnly SameSite=Strict cookie out "
        "that admin routes accept like the bearer header.",
        (200, "Logged in; the cookie is set.", api_models.Session),
        errors={
            400: BAD,
            401: "Wrong admin token.",
            404: "No admin_token is set: nothing to log in to.",
            413: "Body too large.",
            415: "The body is not application/json.",
        },
        body=api_models.Login,
    ),
    ("DELETE", "/api/session"): Operation(
        "Log out: the cookie is cleared.", (200, "Logged out.", api_models.Session)
    ),
    ("GET", "/api/workers/{hardware_id}/stats"): Operation(
        "Solutions of one hardware id within a window.",
        (200, "OK", api_models.WorkerStats),
        [
            _path("hardware_id", {"type": "string"}),
            _query(
                "window",
                {"type": "string", "pattern": "^[0-9]+[smhd]$", "default": "1h"},
                "Window like 30s, 15m, 1h, 7d (at most 90d).",
            ),
        ],
        {400: BAD, 404: UNKNOWN, 503: DOWN},
    ),
    ("GET", "/api/fleet"): Operation(
        "Workers whose hardware id, address, caption or remote IP contains `q` (any case; "
        "in the newest 100,000 connections and every open one), one per hardware id, last "
        "seen first. Empty `q`: the most recently seen.",
        (200, "OK", api_models.Fleet),
        [
            _query("q", {"type": "string", "maxLength": fleet.MAX_QUERY_CHARS}, "Text to find."),
            _integer("limit", 1, fleet.MAX_LIMIT, fleet.DEFAULT_LIMIT, "Most workers answered."),
        ],
        {400: BAD, 503: DOWN},
    ),
    ("GET", "/api/dead-letters"): Operation(
        "Per work queue: its ready messages, its dead-letter queue's, and the oldest dead "
        "letters with their reason (peeked: left in place, in order).",
        (200, "OK", api_models.DeadLetters),
        [_integer("peek", 0, dead_letters.MAX_PEEK, dead_letters.DEFAULT_PEEK, "Per queue.")],
        {400: BAD, 503: DOWN},
    ),
    ("POST", "/api/dead-letters/{queue}/requeue"): Operation(
        "Move `<queue>.dead_letter` back to the work queue, each confirmed before its copy "
        "is removed; at most `limit`. Call again while `remaining` is not 0.",
        (200, "Moved.", api_models.Requeued),
        [
            _path("queue", {"type": "string", "enum": sorted(ROUTES)}),
            _integer(
                "limit", 1, dead_letters.MAX_REQUEUE, dead_letters.DEFAULT_REQUEUE, "Most moved."
            ),
        ],
        {400: BAD, 404: "No such queue: job or solution.", 503: DOWN},
    ),
}

Mode = Literal["validation", "serialization"]


def schemas(models: Iterable[tuple[type[BaseModel], Mode]]) -> dict[str, Any]:
    """`components.schemas`: each model's JSON Schema under its name, with its `$defs`."""
    collected: dict[str, Any] = {}
    for model, mode in models:
        schema = model.model_json_schema(ref_template=REF, mode=mode)
        for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if collected.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are named {name!r}")
    return collected


def _content(model: type[BaseModel] | None) -> dict[str, Any]:
    schema = {"type": "object"} if model is None else {"$ref": REF.format(model=model.__name__)}
    return {"application/json": {"schema": schema}}


def _json(description: str, model: type[BaseModel] | None) -> dict[str, Any]:
    return {"description": description, "content": _content(model)}


def _operation(operation: Operation, access: str) -> dict[str, Any]:
    status, description, model = operation.ok
    answers = {**operation.errors, **TOKEN_ANSWERS[access]}
    responses = {str(status): _json(description, model)}
    for code in sorted(answers):
        responses[str(code)] = _json(answers[code], api_models.Error)
    described: dict[str, Any] = {"summary": operation.summary}
    if operation.parameters:
        described["parameters"] = operation.parameters
    if operation.body is not None:
        described["requestBody"] = {"required": True, "content": _content(operation.body)}
    described["responses"] = responses
    described["security"] = SECURITY[access]
    return described


def build(routes: Iterable[tuple[str, str, Any, str]]) -> dict[str, Any]:
    """The document for these (method, path, handler, access) routes; those under /api."""
    paths: dict[str, dict[str, Any]] = {}
    models: list[tuple[type[BaseModel], Mode]] = [(api_models.Error, "serialization")]
    for method, path, _handler, access in routes:
        if not path.startswith("/api"):
            continue
        operation = OPERATIONS[(method, path)]
        paths.setdefault(path, {})[method.lower()] = _operation(operation, access)
        if operation.ok[2] is not None:
            models.append((operation.ok[2], "serialization"))
        if operation.body is not None:
            models.append((operation.body, "validation"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wspool node_server API",
            "version": "1",
            "description": "Read API (admin token when `admin_token` is set), REST job "
            "submission for nodes (node `auth_tokens` when set). Errors are `{error, detail}`. "
            "Pages are newest first; pass the page's `next_before` as `before` for the next one.",
        },
        "components": {
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer", "description": "admin_token"},
                "node": {"type": "http", "scheme": "bearer", "description": "auth_tokens"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "wspool_admin",
                    "description": "set by POST /api/session",
                },
            },
            "schemas": schemas(models),
        },
        "paths": paths,
    }


@functools.cache
def document() -> dict[str, Any]:
    """The description of `node_server.routes.ROUTES`."""
    from node_server.routes import ROUTES  # it imports this module for the handler below

    return build(ROUTES)


@functools.cache
def _encoded() -> bytes:
    return orjson.dumps(document())


async def openapi(_request: web.Request) -> web.Response:
    return web.Response(body=_encoded(), content_type="application/json")
