"""Wiring every service shares: resources as aiohttp cleanup contexts, and running."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import uvloop
from aiohttp import web

from shared.backoff import HEALTHY_RUN_SECONDS, Backoff
from shared.catalogue import Service
from shared.db import POOL, create_pool, migrate
from shared.logs import configure_logging
from shared.runtime.cli import load_settings
from shared.runtime.health import SUPERVISION, add_check
from shared.runtime.listeners import listening
from shared.runtime.supervisor import CANNOT_LISTEN_EXIT, die_with_parent, process_index, supervise
from shared.runtime.tasks import owned
from shared.settings import ServiceSettings
from shared.websocket.settings import WebsocketServerSettings

CleanupContext = Callable[[web.Application], AsyncIterator[None]]
# Per child of a service run as several processes: the variables it gets besides the parent's.
Children = Callable[[Any], list[dict[str, str]]]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# After the graceful shutdown: how long tasks no cleanup owned get to end once cancelled.
CANCEL_DEADLINE_SECONDS = 2.0
log = logging.getLogger(__name__)


def postgres(settings: ServiceSettings) -> CleanupContext:
    """The asyncpg pool as `app[POOL]`; migrations first when `auto_migrate` is set."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        dsn = settings.postgres_dsn.get_secret_value()
        if settings.auto_migrate:
            await retry("postgres_migrate", lambda: migrate(dsn))
        async with create_pool(dsn, settings.postgres_pool_size) as pool:
            app[POOL] = pool

            async def reachable() -> bool:
                return await pool.fetchval("SELECT 1") == 1

            add_check(app, "postgres", reachable)
            yield

    return context


def background(
    name: str, run: Callable[[web.Application], Coroutine[Any, Any, None]]
) -> CleanupContext:
    """A long-running task owned by the app: started at start-up, cancelled at cleanup.

    Supervised: if `run` fails, the error is logged once with its traceback
    and `run` starts again after a backoff, so no loop of the service is ever
    silently gone. Failing `task_failure_limit` times in a row turns /healthz
    to 503 (`shared.runtime.health.Supervision`). A `run` that returns is done.
    """

    async def supervised(app: web.Application) -> None:
        supervision = app.get(SUPERVISION)  # None: an app without health routes
        backoff = Backoff()
        while True:
            started = time.monotonic()
            if supervision is not None:
                supervision.started(name)
            try:
                await run(app)
                return
            except asyncio.CancelledError:
                if _cancelled():
                    raise
                # Not our cancellation: one leaked from a library (aiokafka's
                # `stop()` can raise it), which would otherwise end the task unseen.
                log.exception("task_failed", extra={"task": name})
            except Exception:
                log.exception("task_failed", extra={"task": name})
            if supervision is not None:
                supervision.failed(name)
            if time.monotonic() - started > HEALTHY_RUN_SECONDS:
                backoff.reset()  # it ran fine for a while: this is a new failure
            await backoff.sleep()

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with owned(supervised(app), name):
            yield

    return context


def _cancelled() -> bool:
    """Whether the running task itself was asked to stop."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def retry(what: str, attempt: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    backoff = Backoff()
    while True:
        try:
            return await attempt()
        except Exception as error:  # logged and retried: the dependency may come back
            log.warning("retrying", extra={"what": what, "error": repr(error)})
            await backoff.sleep()


def stop_once(loop: asyncio.AbstractEventLoop, stopping: asyncio.Event) -> None:
    """SIGTERM/SIGINT start the graceful shutdown; a repeated signal is only logged.

    A second signal (Ctrl-C reaches the whole process group, then `make run`
    sends SIGTERM) must not abandon the cleanup half-way: the remaining
    cleanup contexts would be finalised out of order after every task was
    cancelled, and the Postgres pool would wait forever for connections no
    task would release.
    """

    def stop(signum: signal.Signals) -> None:
        for other in STOP_SIGNALS:
            loop.add_signal_handler(other, _already_stopping, other)
        log.info("stopping", extra={"signal": signum.name})
        stopping.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)


def _already_stopping(signum: signal.Signals) -> None:
    log.info("already_stopping", extra={"signal": signum.name})


async def _serve(app: web.Application, settings: ServiceSettings, stopping: asyncio.Event) -> None:
    try:
        async with listening(app, settings):
            log.info("listening", extra=_ports(settings))
            await stopping.wait()
    except OSError as error:  # a port taken or not ours to bind: say so in one line
        log.error("cannot_listen", extra={**_ports(settings), "error": str(error)})
        # A supervised child says so with its own code: its supervisor must not retry forever.
        raise SystemExit(1 if process_index() is None else CANNOT_LISTEN_EXIT) from None


def _ports(settings: ServiceSettings) -> dict[str, object]:
    ports: dict[str, object] = {"host": settings.host, "port": settings.port}
    if isinstance(settings, WebsocketServerSettings):
        ports["internal_port"] = settings.internal_port
    return ports


def _cancel_remaining(loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
    """Cancel what no cleanup owned; name any task that ignores it instead of waiting forever.

    Whether every task ended.
    """
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if not tasks:
        return True
    _done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=deadline))
    for task in pending:
        log.error("task_did_not_stop", extra={"task": task.get_name()})
    return not pending


def run(app: web.Application, settings: ServiceSettings) -> None:
    """Serve until SIGTERM/SIGINT, then shut down within the configured deadline."""
    # A broadcast is one socket write per connection: uvloop makes each far cheaper.
    loop_factory = uvloop.new_event_loop if settings.event_loop == "uvloop" else None
    runner = asyncio.Runner(loop_factory=loop_factory)
    stopping = asyncio.Event()
    stop_once(runner.get_loop(), stopping)
    try:
        runner.run(_serve(app, settings, stopping))
    finally:
        # The runner's close (async generators, default executor, loop) waits for
        # every task without a bound: a task that ignores cancellation would hang it.
        if _cancel_remaining(runner.get_loop(), CANCEL_DEADLINE_SECONDS):
            runner.close()
        # Stopped: a late repeat of the signal must not turn a clean exit into a kill.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def serve(
    service: Service,
    create_app: Callable[[Any], web.Application],
    children: Children | None = None,
) -> None:
    """Entry point of every `python -m <service>`: settings, logging, serve.

    With `processes` > 1 this process only supervises that many children
    (`shared.runtime.supervisor`), each serving the same ports; `children` gives each
    one's extra environment, so a service can give one child another job.
    """
    settings = load_settings(service.settings_class())
    configure_logging(service.module, settings.log_level)
    if settings.processes > 1 and process_index() is None:
        extra_env = children(settings) if children else [{}] * settings.processes
        raise SystemExit(supervise(service.module, extra_env, settings.shutdown_timeout_seconds))
    if process_index() is not None:
        die_with_parent()
    run(create_app(settings), settings)
