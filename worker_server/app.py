"""Wiring of worker_server: the worker websocket at `/`, liveness sweep, health."""

import logging

from aiohttp import web

from shared.db import POOL
from shared.rabbit import Publisher
from shared.routes import CANDIDATE, SOLUTION
from shared.runtime.health import add_check
from shared.runtime.lifecycle import background, retry
from shared.websocket.access import ADDRESS_BUCKETS, AddressBuckets
from shared.websocket.app import FANOUT, create_websocket_app
from worker_server.admission import Admission, HandshakeRate, address_block
from worker_server.bans import Bans
from worker_server.enforce import BANS, WELCOMED, bans_at_start, keep_bans
from worker_server.jobs import CurrentJob, job_stream
from worker_server.limits import CandidateBudgets, TaskCounts
from worker_server.liveness import keep_worker_rows
from worker_server.rows import WorkerRows, written_at_shutdown
from worker_server.settings import WorkerServerSettings
from worker_server.store import KnownTasks, keep_tasks_known
from worker_server.ws import (
    ADMISSION,
    CANDIDATE_BUDGETS,
    CANDIDATE_PUBLISHER,
    CURRENT_JOB,
    HANDSHAKES,
    SETTINGS,
    TASK_COUNTS,
    TASKS,
    WORKER_ROWS,
    worker_socket,
)

log = logging.getLogger(__name__)


def create_app(settings: WorkerServerSettings) -> web.Application:
    current = CurrentJob()
    app = create_websocket_app(
        settings, exchange=SOLUTION.exchange, stream=job_stream(current), socket=worker_socket
    )
    app[SETTINGS] = settings
    # The current job comes from Postgres: not ready, and no welcome served, until it is read.
    app[CURRENT_JOB] = current

    async def load_current_job(app: web.Application) -> None:
        await retry("current_job_load", lambda: current.load(app[POOL]))

    async def current_job_loaded() -> bool:
        return current.loaded.is_set()

    app.cleanup_ctx.append(background("current-job", load_current_job))
    add_check(app, "current_job", current_job_loaded)
    app[TASKS] = KnownTasks(missing_seconds=settings.unknown_task_cache_seconds)
    app.cleanup_ctx.append(background("known-tasks", keep_tasks_known(app[FANOUT], app[TASKS])))
    # The candidate lane: block candidates on an exchange and queue of their own.
    candidates = Publisher(
        settings.rabbitmq_url.get_secret_value(), CANDIDATE.exchange, settings.client_name
    )
    app[CANDIDATE_PUBLISHER] = candidates
    app.cleanup_ctx.append(
        background(f"publisher-{CANDIDATE.exchange}", lambda _app: candidates.run())
    )
    app[ADMISSION] = Admission(settings.max_connections, settings.max_connections_per_ip)
    app[HANDSHAKES] = HandshakeRate(settings.handshakes_per_second, settings.handshake_burst)
    app[WELCOMED] = set()
    app[WORKER_ROWS] = rows = WorkerRows(
        settings.server_instance, settings.max_unwritten_worker_rows
    )
    # Registered before its writer, so it runs after the writer stopped: the closes of
    # the shutdown are written too.
    app.cleanup_ctx.append(written_at_shutdown(rows))
    app.cleanup_ctx.append(background("worker-rows", lambda app: rows.run(app[POOL])))
    # Workers come from the internet, many to an address: their bytes are paced by it.
    app[ADDRESS_BUCKETS] = AddressBuckets(
        settings.address_bytes_per_second,
        settings.address_bytes_burst,
        lambda remote: address_block(remote, settings),
    )
    app[TASK_COUNTS] = TaskCounts()
    app[CANDIDATE_BUDGETS] = CandidateBudgets(
        settings.candidates_per_minute, settings.candidates_per_minute_per_address
    )
    app[BANS] = Bans(settings)
    # Before the listeners open: no handshake is judged without the stored bans.
    app.cleanup_ctx.append(bans_at_start)
    app.cleanup_ctx.append(background("worker-liveness", keep_worker_rows))
    app.cleanup_ctx.append(background("worker-bans", keep_bans))
    if not settings.auth_tokens:
        log.warning("auth_disabled", extra={"detail": "no auth tokens set: anyone may connect"})
    return app
