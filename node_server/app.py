"""Wiring of node_server: the node websocket at `/`, the HTTP API, dashboard, health."""

import logging

from aiohttp import web

from node_server.dashboard import add_shared_document
from node_server.recovery import RECENT, RecoveryWindow, keep_recent
from node_server.routes import add_routes
from node_server.sessions import LOGIN_ATTEMPTS, LoginAttempts
from node_server.settings import NodeServerSettings
from node_server.solutions import CANDIDATE_STREAM, SOLUTION_STREAM
from node_server.ws import SETTINGS, node_socket
from shared.routes import JOB
from shared.websocket.app import FANOUT, create_websocket_app

log = logging.getLogger(__name__)


def create_app(settings: NodeServerSettings) -> web.Application:
    app = create_websocket_app(
        settings,
        exchange=JOB.exchange,
        stream=SOLUTION_STREAM,
        socket=node_socket,
        more_streams=[CANDIDATE_STREAM],  # the candidate lane: never behind shares
        own_hosts=settings.admin_allowed_hosts,  # the dashboard's page posts from there
    )
    app[SETTINGS] = settings
    if settings.fanout_mode == "shared" and settings.recovery_window_per_height:
        window = RecoveryWindow(
            settings.recovery_window_per_height,
            settings.solution_wait_time_seconds,
            settings.recovery_window_solutions,
        )
        app[RECENT] = window
        app.cleanup_ctx.append(keep_recent(app[FANOUT], window))
    app[LOGIN_ATTEMPTS] = LoginAttempts()
    add_routes(app)
    add_shared_document(app, settings)
    if not settings.auth_tokens:
        log.warning(
            "nodes_loopback_only",
            extra={
                "detail": "no auth_tokens: the node websocket and POST /api/jobs answer "
                "loopback only"
            },
        )
    if settings.admin_token is None:
        log.warning(
            "admin_api_loopback_only",
            extra={"detail": "no admin_token: the read API and dashboard answer loopback only"},
        )
    return app
