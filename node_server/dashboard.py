"""The live dashboard: a static page, the JSON document it draws, and its live stream.

The page (static/dashboard.html) has no dependencies and no build step. It
listens to `/dashboard/events`, server-sent events carrying the same document as
`/api/dashboard` every `PUSH_SECONDS`, and redraws in place; it falls back
to polling `/api/dashboard` if the stream can't be held open.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from node_server import cluster, dashboard_models, queries
from node_server.api import current_stats, json_response
from shared.db import POOL

PAGE = Path(__file__).with_name("static") / "dashboard.html"
CHART_MINUTES = 30
BUSIEST_WINDOW_SECONDS = 3600
BUSIEST_COUNT = 10
PUSH_SECONDS = 2.0
# Ends every open event stream at shutdown: an open stream would hold it up.
STOPPING = web.AppKey("dashboard_stopping", asyncio.Event)


async def page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})


async def data(request: web.Request) -> web.Response:
    return json_response(await document(request.app))


async def document(app: web.Application) -> dashboard_models.Dashboard:
    pool = app[POOL]
    everything = await cluster.cluster(pool)
    return dashboard_models.Dashboard(
        stats=await current_stats(app, everything.connections),
        cluster=everything,
        current_job=await cluster.current_job(pool, everything.instances),
        per_minute=await queries.per_minute(pool, CHART_MINUTES),
        worker_closes_per_minute=await queries.closes_per_minute(pool, CHART_MINUTES),
        busiest_workers=await queries.busiest(pool, BUSIEST_WINDOW_SECONDS, BUSIEST_COUNT),
    )


async def events(request: web.Request) -> web.StreamResponse:
    """GET /dashboard/events: the dashboard document as server-sent events, until either side stops.

    A document that can't be built (the database is down) is sent as an
    `error` event instead, and the stream goes on.
    """
    stopping = request.app[STOPPING]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    while not stopping.is_set():
        try:
            body = (await document(request.app)).model_dump_json().encode()
            event = b"event: dashboard\ndata: " + body + b"\n\n"
        except Exception as error:  # the page shows it; the next push may succeed
            event = b"event: error\ndata: " + str(error)[:200].encode() + b"\n\n"
        try:
            await response.write(event)
        except ConnectionError:  # the page went away
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), PUSH_SECONDS)
    return response


async def end_streams(app: web.Application) -> None:
    """On shutdown, before the open handlers are waited for."""
    app[STOPPING].set()
