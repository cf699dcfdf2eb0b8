"""OpenAPI 3 description of node_server's HTTP API, served at /api/openapi.json.

Kept as data next to the routes; tests check that every route under /api is
described here and answers with the status codes listed for it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node_server.api_schemas import INT64, SCHEMAS
from node_server.params import DEFAULT_LIMIT, MAX_LIMIT


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


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "Page size.",
)
BEFORE_ID = _query("before", INT64, "Cursor: `next_before` of the previous page (an id).")
TASK_ID = _path("task_id", {"type": "string", "format": "uuid"})
ERROR_400 = _json("Invalid parameter or body.", "Error")
ERROR_401 = _json(
    "A token is required: node routes take a bearer header or ?token=, admin routes a bearer "
    "header or the dashboard's login cookie.",
    "Error",
)
ERROR_404 = _json("No such job or worker.", "Error")
ERROR_503 = _json("The database or broker is unavailable; retry later.", "Error")
ADMIN = [{"bearer": []}, {"session": []}]


def _read(summary: str, parameters: list[dict[str, Any]], schema: str, *codes: int) -> Any:
    responses: dict[str, Any] = {"200": _json("OK", schema), "401": ERROR_401, "503": ERROR_503}
    for code in codes:
        responses[str(code)] = {400: ERROR_400, 404: ERROR_404}[code]
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
            "security": ADMIN,
        }
    }


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "wspool node_server API",
        "version": "1",
        "description": "Read API (admin token when `admin_token` is set), REST job submission "
        "for nodes (node `auth_tokens` when set). Errors are `{error, detail}`. Pages are "
        "newest first; pass the page's `next_before` as `before` for the next one.",
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "wspool_admin"},
        },
        "schemas": SCHEMAS,
    },
    "paths": {
        "/api/openapi.json": {
            "get": {"summary": "This description.", "responses": {"200": {"description": "OK"}}}
        },
        "/api/stats": _read(
            "Connected workers (cluster, from Postgres) and nodes (this process), current "
            "height, jobs and solutions in the last minute and hour.",
            [],
            "Stats",
        ),
        "/api/dashboard": _read(
            "Everything the dashboard shows: stats, per-minute counts for 30 minutes, "
            "busiest workers of the last hour, delivery latency quantiles of this process.",
            [],
            "Dashboard",
        ),
        "/api/jobs": {
            **_read(
                "Jobs, newest block height first.",
                [LIMIT, _query("before", INT64, "Cursor: a block height (exclusive).")],
                "JobPage",
                400,
            ),
            "post": {
                "summary": "Submit a job like a websocket node does; poll `poll` for solutions.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NodeJob"}}
                    },
                },
                "responses": {
                    "202": _json("Confirmed by RabbitMQ.", "Accepted"),
                    "400": ERROR_400,
                    "401": ERROR_401,
                    "408": _json(
                        "The body did not arrive within http_idle_timeout_seconds.", "Error"
                    ),
                    "409": _json(
                        "conflicting_job: another epoch_challenge holds this block height.",
                        "Error",
                    ),
                    "422": _json(
                        "implausible_height: more than max_height_jump above the newest job.",
                        "Error",
                    ),
                    "413": _json("Body larger than max_message_bytes.", "Error"),
                    "415": _json("The body is not application/json.", "Error"),
                    "503": ERROR_503,
                },
                "security": ADMIN,
            },
        },
        "/api/session": {
            "post": {
                "summary": "The dashboard's login: the admin token in, an HttpOnly "
                "SameSite=Strict cookie out that admin routes accept like the header.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["token"],
                                "properties": {"token": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("Logged in; the cookie is set.", "Session"),
                    "400": ERROR_400,
                    "401": _json("Wrong admin token.", "Error"),
                    "404": _json("No admin_token is set: nothing to log in to.", "Error"),
                    "415": _json("The body is not application/json.", "Error"),
                },
            },
            "delete": {
                "summary": "Log out: the cookie is cleared.",
                "responses": {"200": _json("Logged out.", "Session")},
            },
        },
        "/api/jobs/{task_id}": _read(
            "One job with its solution count.", [TASK_ID], "Job", 400, 404
        ),
        "/api/jobs/{task_id}/solutions": _read(
            "A job's solutions, newest first.",
            [TASK_ID, LIMIT, BEFORE_ID],
            "SolutionPage",
            400,
            404,
        ),
        "/api/jobs/{task_id}/retire": {
            "post": {
                "summary": "Retire a job (it stays stored): every worker_server resets its "
                "workers to the newest job not retired and sends it to them.",
                "parameters": [TASK_ID],
                "responses": {
                    "200": _json("Retired, and the current job announced.", "Retired"),
                    "400": ERROR_400,
                    "401": ERROR_401,
                    "404": ERROR_404,
                    "503": ERROR_503,
                },
                "security": ADMIN,
            }
        },
        "/api/jobs/by-height/{block_height}/solutions": _read(
            "Stored solutions for a block height, oldest first, exactly the `solution` objects "
            "workers sent (node auth tokens). Poll with `after` = previous `next_after`.",
            [
                _path("block_height", INT64),
                _query("min_target", INT64, "Only solutions with solution_target >= this."),
                _query("after", INT64, "Cursor: solutions with a larger id."),
                _query(
                    "challenge_digest",
                    {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "Only if the height's job has this challenge (as `POST /api/jobs` returns).",
                ),
                LIMIT,
            ],
            "HeightSolutions",
            400,
        ),
        "/api/workers": _read(
            "Worker connections (one row each), newest first.",
            [
                _query("connected", {"type": "boolean"}, "Only open (true) or closed (false)."),
                LIMIT,
                BEFORE_ID,
            ],
            "WorkerPage",
            400,
        ),
        "/api/workers/{hardware_id}/stats": _read(
            "Solutions of one hardware id within a window.",
            [
                _path("hardware_id", {"type": "string"}),
                _query(
                    "window",
                    {"type": "string", "pattern": "^[0-9]+[smhd]$", "default": "1h"},
                    "Window like 30s, 15m, 1h, 7d (at most 90d).",
                ),
            ],
            "WorkerStats",
            400,
            404,
        ),
    },
}


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(SPEC)
