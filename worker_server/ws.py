"""A worker's websocket: welcome first, then newest jobs out and solutions in."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from shared.db import DATABASE_ERRORS, POOL
from shared.filters import JobUpdate, NewerJobsOnly
from shared.metrics import (
    BROKER_ERRORS,
    CONNECTIONS,
    CONNECTIONS_REFUSED,
    CONNECTIONS_TOTAL,
    LATENCY,
)
from shared.protocol import (
    ProtocolError,
    SolutionMessage,
    Welcome,
    WorkerSolution,
    check_size,
    encode,
    now_ns,
    parse,
)
from shared.rabbit import PublishRefused
from shared.server import FANOUT, PUBLISHER, registered, subscribed
from shared.ws import Close, CloseConnection, Connection, authorized, unauthorized
from worker_server.admission import Admission, refused
from worker_server.settings import WorkerServerSettings
from worker_server.store import KnownTasks, close_worker_row, open_worker_row

SETTINGS = web.AppKey("settings", WorkerServerSettings)
TASKS = web.AppKey("known_tasks", KnownTasks)
ADMISSION = web.AppKey("admission", Admission)
OPEN_ROWS = web.AppKey("open_worker_rows", set)
ROLE = "worker"
JOB_LATENCY = LATENCY.labels(kind="job")
log = logging.getLogger(__name__)


class WorkerSubscriber:
    """Offered every job; forwards only those newer than the last one sent."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.newer = NewerJobsOnly()
        self.joined_at = now_ns()

    def offer(self, update: JobUpdate) -> None:
        if self.newer.accept(update):
            self.connection.send(update.frame)
            # The latest job sent on joining is history, not fan-out latency.
            if update.received_at >= self.joined_at:
                JOB_LATENCY.observe((now_ns() - update.received_at) / 1e9)


async def worker_socket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    if not authorized(request, settings.auth_tokens):
        CONNECTIONS_REFUSED.labels(role=ROLE, reason="unauthorized").inc()
        return unauthorized()
    remote = request.remote or "unknown"
    admission = app[ADMISSION]
    if (refusal := admission.refusal(remote)) is not None:
        CONNECTIONS_REFUSED.labels(role=ROLE, reason=refusal).inc()
        return refused(refusal)
    with admission.holding(remote):
        return await _worker_connection(request)


async def _worker_connection(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    connection = Connection(request, settings, ROLE)
    CONNECTIONS_TOTAL.labels(role=ROLE).inc()
    CONNECTIONS.labels(role=ROLE).inc()
    row_id: int | None = None
    try:
        async with connection.open():
            with registered(app, connection):
                welcome = await _receive_welcome(connection, settings.welcome_timeout_seconds)
                row_id = await _open_row(app, connection, welcome)
                await _serve(app, connection, welcome)
    finally:
        CONNECTIONS.labels(role=ROLE).dec()
        if row_id is not None:
            app[OPEN_ROWS].discard(row_id)
            await _close_row(app, row_id, connection)
    return connection.ws


async def _receive_welcome(connection: Connection, timeout: float) -> Welcome:
    try:
        async with asyncio.timeout(timeout):
            frame = await connection.receive()
    except TimeoutError:
        raise CloseConnection(
            Close.INVALID_WELCOME, f"no welcome within {timeout:g} seconds"
        ) from None
    if frame is None:
        raise CloseConnection(Close.INVALID_WELCOME, "closed before welcome")
    try:
        return parse(Welcome, frame)
    except ProtocolError as error:
        raise CloseConnection(Close.INVALID_WELCOME, f"invalid welcome: {error.detail}") from None


async def _open_row(app: web.Application, connection: Connection, welcome: Welcome) -> int:
    try:
        row_id = await open_worker_row(
            app[POOL], welcome, connection.remote, app[SETTINGS].server_instance
        )
    except DATABASE_ERRORS as error:
        BROKER_ERRORS.labels(broker="postgres").inc()
        log.error("worker_row_failed", extra={**connection.log_context, "error": repr(error)})
        raise CloseConnection(Close.UNAVAILABLE, "database unavailable") from None
    app[OPEN_ROWS].add(row_id)
    connection.hardware_id = welcome.hardware_id
    log.info("worker_connected", extra={**connection.log_context, "worker_row": row_id})
    return row_id


async def _serve(app: web.Application, connection: Connection, welcome: Welcome) -> None:
    async with subscribed(app[FANOUT], WorkerSubscriber(connection)):
        while (frame := await connection.receive()) is not None:
            await _handle_solution(app, connection, welcome, frame)


async def _handle_solution(
    app: web.Application, connection: Connection, welcome: Welcome, frame: bytes
) -> None:
    received_at = now_ns()
    try:
        solution = parse(WorkerSolution, frame)
        check_size("solution", solution.solution, connection.settings.max_object_bytes)
    except ProtocolError as error:
        await connection.invalid(error.code, error.detail)
        return
    try:
        known = await app[TASKS].exists(app[POOL], solution.task_id)
    except DATABASE_ERRORS:
        BROKER_ERRORS.labels(broker="postgres").inc()
        raise CloseConnection(Close.UNAVAILABLE, "database unavailable") from None
    if not known:
        await connection.invalid("unknown_task", f"task {solution.task_id} does not exist")
        return
    message = SolutionMessage(
        task_id=solution.task_id,
        solution=solution.solution,
        solution_target=solution.solution_target,
        hardware_id=welcome.hardware_id,
        caption=welcome.caption,
    )
    try:
        await app[PUBLISHER].publish(encode(message), received_at)
    except PublishRefused as error:
        log.error("solution_publish_refused", extra={**connection.log_context, "error": str(error)})
        raise CloseConnection(
            Close.UNAVAILABLE, "solution not accepted: broker unavailable"
        ) from None


async def _close_row(app: web.Application, row_id: int, connection: Connection) -> None:
    try:
        await close_worker_row(app[POOL], row_id, connection.close_code)
    except DATABASE_ERRORS as error:  # the stale-row sweep closes it later
        BROKER_ERRORS.labels(broker="postgres").inc()
        log.warning("worker_row_close_failed", extra={"worker_row": row_id, "error": repr(error)})
    log.info(
        "worker_disconnected",
        extra={**connection.log_context, "worker_row": row_id, "code": connection.close_code},
    )
