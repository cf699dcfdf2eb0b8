"""A node's websocket: jobs in (published with a confirm), matching solutions out."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiohttp import web

from node_server.expectations import NodeExpectations
from node_server.recovery import missed
from node_server.settings import NodeServerSettings
from node_server.solutions import SolutionUpdate
from node_server.submit import RefusedJob, check_job, submit_job
from shared.metrics import LATENCY, RECOVERED
from shared.protocol import NodeJob, now_ns
from shared.websocket.connection import Connection
from shared.websocket.steps import FrameTable, Role, socket_handler

SETTINGS = web.AppKey("settings", NodeServerSettings)
ROLE = "node"
SOLUTION_LATENCY = LATENCY.labels(kind="solution")
log = logging.getLogger(__name__)


class NodeSession:
    """Offered every solution; forwards those this node's confirmed jobs wait for."""

    def __init__(self, request: web.Request, connection: Connection) -> None:
        self.app = request.app
        self.connection = connection
        settings = request.app[SETTINGS]
        self.expectations = NodeExpectations(
            settings.solution_wait_time_seconds,
            max_heights=settings.max_expected_heights,
            max_delivered=settings.max_delivered_per_connection,
            max_jobs_per_height=settings.max_jobs_per_height,
        )

    def offer(self, update: SolutionUpdate) -> None:
        if self.expectations.accept(update):
            self.connection.send(update.frame)
            SOLUTION_LATENCY.observe(max(0, now_ns() - update.received_at) / 1e9)

    def recovered(self, update: SolutionUpdate, source: str) -> None:
        """A solution found before this job was (re)sent: history, not delivery latency."""
        if self.expectations.accept(update):
            self.connection.send(update.frame)
            RECOVERED.labels(source=source).inc()

    async def opened(self) -> Mapping[str, object]:
        return {}

    async def closed(self) -> None:
        pass


async def on_job(session: NodeSession, job: NodeJob) -> None:
    received_at = now_ns()
    check_job(job, session.connection.settings)
    settings = session.app[SETTINGS]
    try:
        digest = await submit_job(session.app, job, received_at, settings.max_height_jump)
    except RefusedJob as refused:  # not an invalid frame: the node is told, not punished
        session.connection.send_error(refused.code, refused.detail)
        return
    # Only a confirmed job makes this node wait for solutions; then what it missed.
    session.expectations.expect(job.block_height, job.proof_target, digest, time.monotonic())
    wait_seconds = settings.solution_wait_time_seconds
    async for source, update in missed(session.app, job, digest, wait_seconds):
        session.recovered(update, source)


NODE = Role(
    name=ROLE,
    settings=SETTINGS,
    frames=FrameTable({NodeJob: on_job}, default=NodeJob),
    session=NodeSession,
    log=log,
)
node_socket = socket_handler(NODE)
