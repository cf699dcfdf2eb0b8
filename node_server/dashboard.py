"""The live dashboard: a static page, the JSON document it draws, and its live stream.

The page (static/dashboard.html) has no dependencies and no build step. It
listens to `/dashboard/events`, server-sent events carrying the same document as
`/api/dashboard` every `dashboard_interval_seconds`, and redraws in place; it
falls back to polling `/api/dashboard` if the stream can't be held open (or is
refused: there are `max_dashboard_streams` already). Both read the process's
one shared build (`node_server.dashboard_feed`).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from node_server import cluster, dashboard_models, queries
from node_server.api import current_stats, error_response, json_response
from node_server.dashboard_feed import FEED, DashboardFeed, keep_building
from node_server.settings import NodeServerSettings
from shared.db import POOL
from shared.errors import ErrorCode
from shared.metrics import REFUSED_CONNECTIONS
from shared.runtime.lifecycle import background
from shared.websocket.connection import OPEN_SOCKETS

PAGE = Path(__file__).with_name("static") / "dashboard.html"
CHART_MINUTES = 30
BUSIEST_WINDOW_SECONDS = 3600
BUSIEST_COUNT = 10
RETRY_AFTER_SECONDS = 10


async def page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})


async def data(request: web.Request) -> web.Response:
    """GET /api/dashboard: the shared build if it is fresh, else the next one."""
    feed = request.app[FEED]
    built = feed.fresh()
    if built is None:
        with feed.reading():
            built = await feed.after(feed.seen_before_joining())
    if built is None:
        raise web.HTTPServiceUnavailable(text="shutting down")
    if built.error is not None:
        raise built.error  # the API middleware answers it (503 while Postgres is down)
    return json_response(built.document)


async def events(request: web.Request) -> web.StreamResponse:
    """GET /dashboard/events: the shared build as server-sent events, until either side stops.

    A build that failed (the database is down) is sent as an `error` event
    instead, and the stream goes on. Beyond `max_dashboard_streams` open
    streams: 503 with Retry-After.
    """
    feed = request.app[FEED]
    if feed.full():
        REFUSED_CONNECTIONS.labels(role="dashboard", reason="capacity").inc()
        refused = error_response(
            503, ErrorCode.UNAVAILABLE, "too many dashboard streams open; poll /api/dashboard"
        )
        refused.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return refused
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    with feed.reading(stream=True):  # counted before the first await: the cap holds
        await response.prepare(request)
        seen = feed.seen_before_joining()
        while (built := await feed.after(seen)) is not None:
            try:
                await response.write(built.event)
            except ConnectionError:  # the page went away
                break
            seen = built.number
    return response


async def document(db: queries.Queryable, connected_here: int) -> dashboard_models.Dashboard:
    everything = await cluster.cluster(db)
    return dashboard_models.Dashboard(
        stats=await current_stats(db, everything.connections, connected_here),
        cluster=everything,
        current_job=await cluster.current_job(db, everything.instances),
        per_minute=await queries.per_minute(db, CHART_MINUTES),
        worker_closes_per_minute=await queries.closes_per_minute(db, CHART_MINUTES),
        busiest_workers=await queries.busiest(db, BUSIEST_WINDOW_SECONDS, BUSIEST_COUNT),
    )


async def build(app: web.Application, timeout_seconds: float) -> dashboard_models.Dashboard:
    """One document: one connection of the pool, one read-only snapshot, a statement timeout."""
    async with app[POOL].acquire() as connection, connection.transaction(readonly=True):
        await connection.execute(f"SET LOCAL statement_timeout = {round(timeout_seconds * 1000)}")
        return await document(connection, len(app[OPEN_SOCKETS]))


def add_shared_document(app: web.Application, settings: NodeServerSettings) -> None:
    """The app's feed, its owned builder, and the feed's close at shutdown (which ends
    every open stream: one would hold the shutdown up)."""
    feed = DashboardFeed(settings.dashboard_interval_seconds, settings.max_dashboard_streams)
    app[FEED] = feed
    timeout = settings.dashboard_statement_timeout_seconds
    app.cleanup_ctx.append(
        background("dashboard", lambda app: keep_building(feed, lambda: build(app, timeout)))
    )

    async def close(_app: web.Application) -> None:
        feed.close()

    app.on_shutdown.append(close)
