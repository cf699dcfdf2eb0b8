"""The fleet search: find a worker by any of its names, see how it is doing.

`GET /api/fleet?q=` matches `q` (case-insensitive substring) against the
hardware id, address, caption and remote IP of the newest connection rows and
of every open one (`queries.FLEET_SCAN_ROWS`), and answers one item per
hardware id: its latest connection, its solutions of the last hour and its
last few disconnects with their close codes.
"""

from __future__ import annotations

from aiohttp import web

from node_server import api_models, queries
from node_server.api import json_response
from node_server.params import FleetParams
from shared.db import POOL

RECENT_DISCONNECTS = 5


async def search(request: web.Request, params: FleetParams) -> web.Response:
    """GET /api/fleet: an empty `q` lists the most recently seen workers."""
    rows = await queries.fleet(request.app[POOL], params.q, params.limit, RECENT_DISCONNECTS)
    items = [
        api_models.FleetWorker(**row, shares_per_minute=row["solutions_last_hour"] / 60)
        for row in rows
    ]
    return json_response(api_models.Fleet(q=params.q, items=items))
