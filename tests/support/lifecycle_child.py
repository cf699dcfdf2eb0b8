"""A stand-in service for tests of `shared.runtime.lifecycle.run`.

`python -m tests.support.lifecycle_child` serves /readyz on `PORT` with the
`EVENT_LOOP` the environment names, and leaves work behind at shutdown as
`LEFTOVER` says:

- `executor`: a default-executor job still running when its owner is cancelled;
- `deaf`: a task nobody owns that ignores cancellation.

Once `run` returns it logs `run_returned` with the threads still alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator

from aiohttp import web

from shared.logs import configure_logging
from shared.runtime.lifecycle import run
from shared.settings import ServiceSettings

# What the job still has to do once the shutdown began: far longer than closing a loop takes.
JOB_SECONDS = 0.5
DEAF = web.AppKey("deaf", asyncio.Task[None])
log = logging.getLogger("lifecycle_child")


def _job(shutdown: threading.Event) -> None:
    shutdown.wait()
    time.sleep(JOB_SECONDS)
    log.info("job_finished")


async def executor_job(app: web.Application) -> AsyncIterator[None]:
    shutdown = threading.Event()
    job = asyncio.get_running_loop().run_in_executor(None, _job, shutdown)
    yield
    shutdown.set()
    job.cancel()  # ends the wait for it, not the thread: a running job cannot be interrupted
    with contextlib.suppress(asyncio.CancelledError):
        await job


async def _ignore_cancellation() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.info("cancel_ignored")


async def deaf_task(app: web.Application) -> AsyncIterator[None]:
    app[DEAF] = asyncio.create_task(_ignore_cancellation(), name="deaf")
    yield  # and no cancel: the runner meets it after the cleanup


async def ready(_request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


LEFTOVERS = {"executor": executor_job, "deaf": deaf_task}

if __name__ == "__main__":
    configure_logging("lifecycle_child", "INFO")
    settings = ServiceSettings(
        host="127.0.0.1", port=int(os.environ["PORT"]), event_loop=os.environ["EVENT_LOOP"]
    )
    app = web.Application()
    app.router.add_get("/readyz", ready)
    app.cleanup_ctx.append(LEFTOVERS[os.environ["LEFTOVER"]])
    try:
        run(app, settings)
    finally:
        others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        log.info("run_returned", extra={"threads": others})
