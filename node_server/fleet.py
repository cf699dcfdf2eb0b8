"""The fleet search: find a worker by any of its names, see how it is doing.

`GET /api/fleet?q=` matches `q` (case-insensitive substring) against the
hardware id, address, caption and remote IP of the newest connection rows and
of every open one (`queries.FLEET_SCAN_ROWS`), and answers one item per
hardware id: its latest connection, its solutions of the last hour and its
last few disconnects with their close codes.
"""

from __future__ import annotations

from aiohttp import web

from node_server import api_models, params, queries
from node_server.api import json_response
from shared.db import POOL

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_QUERY_CHARS = 255  # the longest id a welcome may carry
RECENT_DISCONNECTS = 5


def query_text(request: web.Request) -> str:
    text = request.query.get("q", "").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise params.invalid("q", f"at most {MAX_QUERY_CHARS} characters")
    return text


async def search(request: web.Request) -> web.Response:
    """GET /api/fleet: an empty `q` lists the most recently seen workers."""
    text = query_text(request)
    limit = params.integer(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    assert limit is not None
    rows = await queries.fleet(request.app[POOL], text, limit, RECENT_DISCONNECTS)
    items = [
        api_models.FleetWorker(**row, shares_per_minute=row["solutions_last_hour"] / 60)
        for row in rows
    ]
    return json_response(api_models.Fleet(q=text, items=items))
