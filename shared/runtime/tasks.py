"""Tasks with an owner: cancelled and awaited by whoever started them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


async def cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has stopped, so nothing of it outlives its owner."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def owned(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    """`work` as a task that runs while the block does."""
    task = asyncio.create_task(work, name=name)
    try:
        yield task
    finally:
        await cancelled(task)
