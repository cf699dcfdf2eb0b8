"""Background tasks are supervised: a failure is logged and the task runs again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from shared.runtime.health import add_health_routes
from shared.runtime.lifecycle import background
from tests.support.poll import until
from tests.support.ports import free_port
from tests.support.stack import serving


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("injected failure"),
        # As aiokafka's stop() may raise it, though nobody cancelled the task.
        asyncio.CancelledError(),
    ],
    ids=["error", "leaked_cancellation"],
)
async def test_a_failing_task_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture, failure: BaseException
) -> None:
    runs: list[int] = []
    running_again = asyncio.Event()

    async def flaky(_app: web.Application) -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            raise failure
        running_again.set()
        await asyncio.Future()  # then runs until cancelled

    lifecycle = contextlib.asynccontextmanager(background("flaky", flaky))
    with caplog.at_level(logging.ERROR, logger="shared.runtime.lifecycle"):
        async with lifecycle(web.Application()):
            await asyncio.wait_for(running_again.wait(), 5)
    # Leaving the block cancelled it for real: that one ends the task (no third run).
    assert runs == [1, 2]
    assert [r.getMessage() for r in caplog.records] == ["task_failed"]
    assert caplog.records[0].exc_info is not None


async def test_a_task_that_returns_is_not_started_again() -> None:
    runs: list[int] = []

    async def once(_app: web.Application) -> None:
        runs.append(1)

    lifecycle = contextlib.asynccontextmanager(background("once", once))
    async with lifecycle(web.Application()):
        (supervisor,) = [task for task in asyncio.all_tasks() if task.get_name() == "once"]
        await until(supervisor.done)  # returned: nothing is left to start `once` again
    assert runs == [1]


async def _healthz(base: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as response:
        return response.status, await response.json()


def _serving_task(
    name: str, run: Callable[[web.Application], Awaitable[None]], failure_limit: int
) -> contextlib.AbstractAsyncContextManager[str]:
    """An app with health routes running `run` as its one background task."""
    app = web.Application()
    add_health_routes(app, failure_limit)
    app.cleanup_ctx.append(background(name, run))
    return serving(app, free_port())


async def test_a_task_failing_past_the_limit_turns_healthz_to_503() -> None:
    attempts: list[int] = []

    async def broken(_app: web.Application) -> None:
        attempts.append(1)
        raise RuntimeError("injected failure")

    async with _serving_task("broken", broken, failure_limit=3) as address:
        answer = await until(
            lambda: _healthz(f"http://{address}"), lambda answer: answer[0] != 200, timeout=10
        )
    assert answer[0] == 503
    assert answer[1]["status"] == "failing" and answer[1]["failures"]["broken"] >= 3
    assert len(attempts) >= 3


async def test_a_task_that_recovers_before_the_limit_stays_healthy() -> None:
    attempts: list[int] = []
    recovered = asyncio.Event()

    async def flaky(_app: web.Application) -> None:
        attempts.append(1)
        if len(attempts) < 3:  # two failures, one short of the limit
            raise RuntimeError("injected failure")
        recovered.set()
        await asyncio.Future()

    async with _serving_task("flaky", flaky, failure_limit=3) as address:
        await asyncio.wait_for(recovered.wait(), 10)
        assert await _healthz(f"http://{address}") == (200, {"status": "ok"})
