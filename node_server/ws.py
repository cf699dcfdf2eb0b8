"""A node's websocket: jobs in (published with a confirm), matching solutions out."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from node_server.settings import NodeServerSettings
from node_server.submit import parse_job, submit_job
from shared.filters import NodeExpectations, SolutionUpdate
from shared.metrics import CONNECTIONS, CONNECTIONS_REFUSED, CONNECTIONS_TOTAL, LATENCY
from shared.protocol import ProtocolError, now_ns
from shared.rabbit import PublishRefused
from shared.server import FANOUT, registered, subscribed
from shared.ws import Close, CloseConnection, Connection, authorized, unauthorized

SETTINGS = web.AppKey("settings", NodeServerSettings)
ROLE = "node"
SOLUTION_LATENCY = LATENCY.labels(kind="solution")
log = logging.getLogger(__name__)


class NodeSubscriber:
    """Offered every solution; forwards those this node's confirmed jobs wait for."""

    def __init__(self, connection: Connection, wait_seconds: float) -> None:
        self.connection = connection
        self.expectations = NodeExpectations(wait_seconds)

    def offer(self, update: SolutionUpdate) -> None:
        if self.expectations.accept(update):
            self.connection.send(update.frame)
            SOLUTION_LATENCY.observe(max(0, now_ns() - update.received_at) / 1e9)


async def node_socket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not authorized(request, settings.auth_tokens):
        CONNECTIONS_REFUSED.labels(role=ROLE, reason="unauthorized").inc()
        return unauthorized()
    connection = Connection(request, settings, ROLE)
    node = NodeSubscriber(connection, settings.solution_wait_time_seconds)
    fanout = request.app[FANOUT]
    CONNECTIONS_TOTAL.labels(role=ROLE).inc()
    CONNECTIONS.labels(role=ROLE).inc()
    try:
        async with connection.open(), subscribed(fanout, node):
            with registered(request.app, connection):
                log.info("node_connected", extra=connection.log_context)
                while (frame := await connection.receive()) is not None:
                    await _handle_job(request.app, connection, node, frame)
    finally:
        CONNECTIONS.labels(role=ROLE).dec()
        log.info(
            "node_disconnected", extra={**connection.log_context, "code": connection.close_code}
        )
    return connection.ws


async def _handle_job(
    app: web.Application, connection: Connection, node: NodeSubscriber, frame: bytes
) -> None:
    received_at = now_ns()
    try:
        job = parse_job(frame, connection.settings)
    except ProtocolError as error:
        await connection.invalid(error.code, error.detail)
        return
    try:
        await submit_job(app, job, received_at)
    except PublishRefused as error:
        log.error("job_publish_refused", extra={**connection.log_context, "error": str(error)})
        raise CloseConnection(Close.UNAVAILABLE, "job not accepted: broker unavailable") from None
    # Only a confirmed job makes this node wait for solutions.
    node.expectations.expect(job.block_height, job.proof_target, time.monotonic())
