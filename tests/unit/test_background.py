"""Background tasks are supervised: a failure is logged and the task runs again."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from aiohttp import web

from shared.lifecycle import background


async def test_a_failing_task_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    running_again = asyncio.Event()

    async def flaky(_app: web.Application) -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            raise RuntimeError("injected failure")
        running_again.set()
        await asyncio.Future()  # then runs until cancelled

    lifecycle = contextlib.asynccontextmanager(background("flaky", flaky))
    with caplog.at_level(logging.ERROR, logger="shared.lifecycle"):
        async with lifecycle(web.Application()):
            await asyncio.wait_for(running_again.wait(), 5)
    assert runs == [1, 2]
    failures = [r for r in caplog.records if r.getMessage() == "task_failed"]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_a_task_that_returns_is_not_started_again() -> None:
    runs: list[int] = []

    async def once(_app: web.Application) -> None:
        runs.append(1)

    lifecycle = contextlib.asynccontextmanager(background("once", once))
    async with lifecycle(web.Application()):
        await asyncio.sleep(0.3)
    assert runs == [1]
