"""A node's websocket: jobs in (published with a confirm), matching solutions out."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping

from aiohttp import web

from node_server.expectations import NodeExpectations
from node_server.recovery import missed
from node_server.settings import NodeServerSettings
from node_server.solutions import SolutionUpdate
from node_server.submit import RefusedJob, check_job, submit_job
from shared.metrics import LATENCY, RECOVERED, REFUSED_CONNECTIONS
from shared.protocol import NodeJob, challenge_digest, now_ns
from shared.websocket.access import forbidden, from_loopback
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

    async def recover(self, job: NodeJob, digest: str) -> None:
        """Send what was found before this job was (re)sent: history, not delivery latency.

        Newest first, at most `max_recovered_solutions`, at the pace the node reads.
        """
        settings = self.app[SETTINGS]
        limit = settings.max_recovered_solutions
        wait_seconds = settings.solution_wait_time_seconds
        sent = 0
        async with contextlib.aclosing(missed(self.app, job, digest, wait_seconds, limit)) as found:
            async for source, update in found:
                if not self.expectations.accept(update):
                    continue
                await self.connection.send_paced(update.frame)
                RECOVERED.labels(source=source).inc()
                sent += 1
                if sent == limit:
                    return

    async def opened(self) -> Mapping[str, object]:
        return {}

    async def closed(self) -> None:
        pass


async def on_job(session: NodeSession, job: NodeJob) -> None:
    """Publish the job, wait for its solutions, send what was already found.

    A job this connection sent before, unchanged and still waited for, is
    not published again (it was confirmed once: every worker has it) and
    answered as before, with no frame; only what is new since is sent.
    """
    received_at = now_ns()
    check_job(job, session.connection.settings)
    settings = session.app[SETTINGS]
    digest = challenge_digest(job.epoch_challenge)
    expectations = session.expectations
    if not expectations.waits_for(job.block_height, job.proof_target, digest):
        try:
            await submit_job(session.app, job, received_at, settings.max_height_jump)
        except RefusedJob as refused:  # not an invalid frame: the node is told, not punished
            session.connection.send_error(refused.code, refused.detail)
            return
    # Only a confirmed job makes this node wait for solutions; then what it missed.
    if expectations.expect(job.block_height, job.proof_target, digest, now=time.monotonic()):
        await session.recover(job, digest)


def node_refusal(request: web.Request, settings: NodeServerSettings) -> web.Response | None:
    """403 for a peer other than this machine while no `auth_tokens` are set, else None.

    A node's jobs reach every worker and it gets every solution of its
    height: without tokens, anyone who could reach the port could send a job
    or collect others' solutions. So no tokens means loopback only, as the
    admin API without its token (the websocket and `POST /api/jobs` alike).
    """
    if settings.auth_tokens or from_loopback(request):
        return None
    return forbidden("set auth_tokens to let nodes connect from other machines")


@contextlib.contextmanager
def admitted(request: web.Request) -> Iterator[web.StreamResponse | None]:
    """The node websocket's `Role.admit`: `node_refusal`, answered before the upgrade."""
    refusal = node_refusal(request, request.app[SETTINGS])
    if refusal is not None:
        REFUSED_CONNECTIONS.labels(role=ROLE, reason="forbidden").inc()
    yield refusal


NODE = Role(
    name=ROLE,
    settings=SETTINGS,
    frames=FrameTable({NodeJob: on_job}, default=NodeJob),
    session=NodeSession,
    log=log,
    admit=admitted,
)
node_socket = socket_handler(NODE)
