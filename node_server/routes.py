"""Every HTTP route of node_server besides the websocket, with who may call it.

All of them answer on the internal port only (`shared.runtime.listeners`). What each
access level means is `node_server.access`.
"""

from __future__ import annotations

from aiohttp import web

from node_server import access, api, dashboard, dead_letters, fleet, rest, retire
from node_server.openapi import openapi

ROUTES: list[tuple[str, str, api.Handler, str]] = [
    ("GET", "/api/openapi.json", openapi, "public"),
    ("GET", "/api/stats", api.stats, "admin"),
    ("GET", "/api/dashboard", dashboard.data, "admin"),
    ("GET", "/api/jobs", api.list_jobs, "admin"),
    ("POST", "/api/jobs", rest.post_job, "node"),
    ("GET", "/api/jobs/by-height/{block_height}/solutions", rest.solutions_at_height, "node"),
    ("GET", "/api/jobs/{task_id}", api.get_job, "admin"),
    ("GET", "/api/jobs/{task_id}/solutions", api.job_solutions, "admin"),
    ("POST", "/api/jobs/{task_id}/retire", retire.retire_job, "admin"),
    ("POST", "/api/jobs/retire", retire.retire_above, "admin"),
    ("GET", "/api/workers", api.list_workers, "admin"),
    ("GET", "/api/workers/{hardware_id}/stats", api.worker_stats, "admin"),
    ("GET", "/api/fleet", fleet.search, "admin"),
    ("GET", "/api/dead-letters", dead_letters.overview, "admin"),
    ("POST", "/api/dead-letters/{queue}/requeue", dead_letters.requeue, "admin"),
    ("POST", "/api/session", access.log_in, "login"),
    ("DELETE", "/api/session", access.log_out, "login"),
    ("GET", "/dashboard", dashboard.page, "login"),
    ("GET", "/dashboard/events", dashboard.events, "admin"),
]


def add_routes(app: web.Application) -> None:
    app.middlewares.append(api.api_errors)
    for method, path, handler, level in ROUTES:
        app.router.add_route(method, path, access.guarded(level, handler))
