"""A node's websocket: jobs in (published with a confirm), matching solutions out."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiohttp import web

from node_server.settings import NodeServerSettings
from node_server.submit import check_job, submit_job
from shared.filters import NodeExpectations
from shared.metrics import LATENCY
from shared.protocol import NodeJob, now_ns
from shared.socket import FrameTable, Role, socket_handler
from shared.updates import SolutionUpdate
from shared.ws import Connection

SETTINGS = web.AppKey("settings", NodeServerSettings)
ROLE = "node"
SOLUTION_LATENCY = LATENCY.labels(kind="solution")
log = logging.getLogger(__name__)


class NodeSession:
    """Offered every solution; forwards those this node's confirmed jobs wait for."""

    def __init__(self, request: web.Request, connection: Connection) -> None:
        self.app = request.app
        self.connection = connection
        self.expectations = NodeExpectations(request.app[SETTINGS].solution_wait_time_seconds)

    def offer(self, update: SolutionUpdate) -> None:
        if self.expectations.accept(update):
            self.connection.send(update.frame)
            SOLUTION_LATENCY.observe(max(0, now_ns() - update.received_at) / 1e9)

    async def opened(self) -> Mapping[str, object]:
        return {}

    async def closed(self) -> None:
        pass


async def on_job(session: NodeSession, job: NodeJob) -> None:
    received_at = now_ns()
    check_job(job, session.connection.settings)
    await submit_job(session.app, job, received_at)
    # Only a confirmed job makes this node wait for solutions.
    session.expectations.expect(job.block_height, job.proof_target, time.monotonic())


NODE = Role(
    name=ROLE,
    settings=SETTINGS,
    frames=FrameTable({NodeJob: on_job}, default=NodeJob),
    session=NodeSession,
    log=log,
)
node_socket = socket_handler(NODE)
