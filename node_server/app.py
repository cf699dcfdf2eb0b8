"""Wiring of node_server: the node websocket at `/`, the HTTP API, dashboard, health."""

from aiohttp import web

from node_server.routes import add_routes
from node_server.settings import NodeServerSettings
from node_server.ws import SETTINGS, node_socket
from shared.rabbit import JOB_EXCHANGE
from shared.updates import SOLUTION_STREAM
from shared.websocket_app import create_websocket_app


def create_app(settings: NodeServerSettings) -> web.Application:
    app = create_websocket_app(settings, exchange=JOB_EXCHANGE, stream=SOLUTION_STREAM)
    app[SETTINGS] = settings
    app.router.add_get("/", node_socket)
    add_routes(app)
    return app
