"""A worker's websocket: welcome first, then newest jobs out and solutions in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping

from aiohttp import web

from shared.codec import check_size, encode, parse
from shared.db import POOL
from shared.errors import (
    Close,
    CloseConnection,
    ErrorCode,
    ProtocolError,
)
from shared.metrics import LATENCY, REFUSED_CONNECTIONS
from shared.protocol import SolutionMessage, Welcome, WorkerSolution, now_ns
from shared.rabbit import Publisher
from shared.websocket.app import PUBLISHER
from shared.websocket.connection import Connection
from shared.websocket.steps import FrameTable, Role, socket_handler
from worker_server.admission import (
    Admission,
    HandshakeRate,
    address_block,
    refused,
    refused_handshake,
)
from worker_server.enforce import (
    BANS,
    WELCOMED,
    close_banned,
    close_banned_soon,
    imposed,
    refused_banned,
)
from worker_server.identity import presented_token, proven
from worker_server.jobs import CurrentJob, JobUpdate
from worker_server.lanes import (
    CANDIDATE,
    SHED_HANDSHAKES,
    SHED_SHARES,
    Publishers,
    chosen_lane,
    overloaded,
    publish,
)
from worker_server.limits import CandidateBudgets, SolutionLimits, TaskCounts
from worker_server.rows import WorkerRow, WorkerRows
from worker_server.settings import WorkerServerSettings
from worker_server.store import KnownTasks

SETTINGS = web.AppKey("settings", WorkerServerSettings)
TASKS = web.AppKey("known_tasks", KnownTasks)
ADMISSION = web.AppKey("admission", Admission)
WORKER_ROWS = web.AppKey("worker_rows", WorkerRows)
HANDSHAKES = web.AppKey("handshakes", HandshakeRate)
TASK_COUNTS = web.AppKey("task_counts", TaskCounts)
CANDIDATE_BUDGETS = web.AppKey("candidate_budgets", CandidateBudgets)
CANDIDATE_PUBLISHER = web.AppKey("candidate_publisher", Publisher)
CURRENT_JOB = web.AppKey("current_job", CurrentJob)
ROLE = "worker"
# How long a welcome waits for the current job to be read at start-up (then 1011):
# longer only while Postgres is away, and then the worker's row could not be opened either.
CURRENT_JOB_WAIT_SECONDS = 5.0
JOB_LATENCY = LATENCY.labels(kind="job")
log = logging.getLogger(__name__)


class WorkerSession:
    """A welcomed worker: its row, and the current job, sent whenever it changes."""

    def __init__(self, request: web.Request, connection: Connection) -> None:
        self.app = request.app
        self.connection = connection
        self.sent_task: uuid.UUID | None = None
        self.welcome: Welcome | None = None
        self.row: WorkerRow | None = None
        self.joined_at = now_ns()
        self.limits = SolutionLimits(self.app[SETTINGS], self.app[TASK_COUNTS])
        # Where the worker is, as the server saw it: what a ban on an unproven identity holds to.
        self.block = address_block(connection.remote, self.app[SETTINGS])
        self.token = presented_token(request)
        self.proven = False  # whether the worker proved its hardware_id (worker_token)

    @property
    def identity(self) -> str:
        """Who the worker is, for limits and bans: not its address, which farms share."""
        assert self.welcome is not None  # frames are dispatched only after the welcome
        return self.welcome.hardware_id

    def offer(self, _update: JobUpdate) -> None:
        """Any record of the fan-out: by then the app's current job has seen it."""
        self.send_current()

    def send_current(self) -> None:
        job = self.app[CURRENT_JOB].job
        if job is None or job.task_id == self.sent_task:
            return
        self.sent_task = job.task_id
        self.connection.send_newest(job.frame)
        # The job sent on joining is history, not fan-out latency.
        if job.received_at >= self.joined_at:
            JOB_LATENCY.observe((now_ns() - job.received_at) / 1e9)

    async def opened(self) -> Mapping[str, object]:
        """Wait for the welcome, record the worker's row, send the current job."""
        settings = self.app[SETTINGS]
        self.welcome = await self._judged_welcome(settings.welcome_timeout_seconds)
        # Before the row: a connection that fails here has nothing to close.
        await self.app[CURRENT_JOB].wait_loaded(CURRENT_JOB_WAIT_SECONDS)
        # Queued, not awaited: the job goes out now, the row is written with the next batch.
        self.row = self.app[WORKER_ROWS].opened(self.welcome, self.connection.remote)
        self.app[WELCOMED].add(self)
        self.send_current()
        return {}

    async def _judged_welcome(self, timeout: float) -> Welcome:
        """The welcome of a worker not banned; an invalid one counts against the address.

        A connection that ends (or times out) before its welcome is no offence:
        a prover that crashes on start must not get its farm's address banned.
        """
        bans = self.app[BANS]
        frame = await _receive_welcome(self.connection, timeout)
        try:
            welcome = parse(Welcome, frame)
            self.connection.hardware_id = welcome.hardware_id
            secret = self.app[SETTINGS].worker_token_secret
            self.proven = proven(secret, welcome.hardware_id, self.token)
        except ProtocolError as error:
            await imposed(self.app, bans.judge_welcome(self.block, bad=True))
            raise CloseConnection(
                Close.INVALID_WELCOME, f"invalid welcome: {error.detail}"
            ) from None
        except CloseConnection:
            await imposed(self.app, bans.judge_welcome(self.block, bad=True))
            raise
        if (ban := bans.identity_ban(welcome.hardware_id, self.block)) is not None:
            REFUSED_CONNECTIONS.labels(role=ROLE, reason="banned").inc()
            log.info(
                "banned_worker_refused", extra={**self.connection.log_context, "reason": ban.reason}
            )
            close_banned(self.connection, ban, bans.seconds_left(ban))
        await imposed(self.app, bans.judge_welcome(self.block, bad=False))
        return welcome

    def close_if_banned(self) -> None:
        """Another connection of this identity got it banned: this one ends too."""
        bans = self.app[BANS]
        if (ban := bans.identity_ban(self.identity, self.block)) is not None:
            close_banned(self.connection, ban, bans.seconds_left(ban))

    def close_if_banned_soon(self) -> None:
        """`close_if_banned` for a ban learnt outside this connection's handler."""
        bans = self.app[BANS]
        if (ban := bans.identity_ban(self.identity, self.block)) is not None:
            self.app[WELCOMED].discard(self)  # told once, however many refreshes come first
            close_banned_soon(self.connection, ban, bans.seconds_left(ban))

    async def judged(self, bad: bool) -> None:
        """Count a solution for or against this worker; close the connection if it is banned."""
        bans = self.app[BANS]
        await imposed(self.app, bans.judge_frame(self.identity, self.block, self.proven, bad))
        self.close_if_banned()

    async def closed(self) -> None:
        assert self.row is not None  # `closed` follows only an `opened` that returned
        self.app[WELCOMED].discard(self)
        self.app[WORKER_ROWS].closed(self.row, self.connection.close_code)


async def _receive_welcome(connection: Connection, timeout: float) -> bytes:
    """The first frame, not yet parsed; none within `timeout` (or a close) ends the connection."""
    try:
        async with asyncio.timeout(timeout):
            frame = await connection.receive()
    except TimeoutError:
        raise CloseConnection(
            Close.INVALID_WELCOME, f"no welcome within {timeout:g} seconds"
        ) from None
    if frame is None:
        raise CloseConnection(Close.INVALID_WELCOME, "closed before welcome")
    return frame


async def on_solution(session: WorkerSession, solution: WorkerSolution) -> None:
    received_at = now_ns()
    app, limits, connection = session.app, session.limits, session.connection
    welcome = session.welcome
    assert welcome is not None  # frames are dispatched only after the welcome
    if limits.over_rate(connection):  # before the task lookup: a flood costs no queries
        return
    check_size("solution", solution.solution, connection.settings.max_object_bytes)
    if not await app[TASKS].exists(app[POOL], solution.task_id):
        raise ProtocolError(ErrorCode.UNKNOWN_TASK, f"task {solution.task_id} does not exist")
    if (solution.task_id, solution.nonce) in limits.recent:
        raise ProtocolError(
            ErrorCode.DUPLICATE_SOLUTION, f"nonce {solution.nonce} already sent for this task"
        )
    if limits.over_task(connection, welcome.hardware_id, solution.task_id):
        return
    # Built from values already validated above: checking them again is the
    # process worker's job, not the busiest loop's.
    message = SolutionMessage.model_construct(
        task_id=solution.task_id,
        solution=solution.solution,
        solution_target=solution.solution_target,
        hardware_id=welcome.hardware_id,
        caption=welcome.caption,
    )
    lane = chosen_lane(app[TASKS], app[CANDIDATE_BUDGETS], message, connection.remote)
    if lane is not CANDIDATE and overloaded(app, app[SETTINGS].shed_lag_ms):
        # Not published, not held: the worker is told, and sends it again later.
        SHED_SHARES.inc()
        connection.send_error(ErrorCode.OVERLOADED, "server overloaded: send it again later")
        return
    publishers = Publishers(app[PUBLISHER], app[CANDIDATE_PUBLISHER])
    await publish(publishers, encode(message), lane, received_at)
    limits.accepted(welcome.hardware_id, solution.task_id, solution.nonce)
    await session.judged(bad=False)


class JudgedFrames(FrameTable[WorkerSession]):
    """A worker's frames: each one refused counts against the worker (bans)."""

    async def dispatch(self, session: WorkerSession, frame: bytes) -> None:
        session.close_if_banned()
        try:
            await super().dispatch(session, frame)
        except ProtocolError:
            await session.judged(bad=True)  # closes instead when that bans the worker
            raise


@contextlib.contextmanager
def admitted(request: web.Request) -> Iterator[web.StreamResponse | None]:
    """Refuse a banned address block (429), one over its handshake rate (429) and past the
    connection caps (503); else count the connection while it lasts."""
    block = address_block(request.remote or "unknown", request.app[SETTINGS])
    bans = request.app[BANS]
    if (ban := bans.address_ban(block)) is not None:
        REFUSED_CONNECTIONS.labels(role=ROLE, reason="banned").inc()
        yield refused_banned(ban, bans.seconds_left(ban))
        return
    if overloaded(request.app, request.app[SETTINGS].shed_lag_ms):  # served as the loop can
        SHED_HANDSHAKES.inc()
        REFUSED_CONNECTIONS.labels(role=ROLE, reason="overloaded").inc()
        yield refused("overloaded")
        return
    handshakes = request.app[HANDSHAKES]
    if not handshakes.take(block):
        REFUSED_CONNECTIONS.labels(role=ROLE, reason="handshake_rate").inc()
        yield refused_handshake(handshakes.retry_after(block))
        return
    admission = request.app[ADMISSION]
    if (refusal := admission.refusal(block)) is not None:
        REFUSED_CONNECTIONS.labels(role=ROLE, reason=refusal).inc()
        yield refused(refusal)
        return
    with admission.holding(block):
        yield None


WORKER = Role(
    name=ROLE,
    settings=SETTINGS,
    # After the welcome, a worker's frames are solutions, typed or not.
    frames=JudgedFrames({WorkerSolution: on_solution}, default=WorkerSolution),
    session=WorkerSession,
    log=log,
    admit=admitted,
)
worker_socket = socket_handler(WORKER)
