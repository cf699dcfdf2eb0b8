"""Waiting in tests: poll what the test waits for, bounded, instead of sleeping a guess.

A timeout names the last value read, so a test that waited in vain says what it saw.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


async def until(
    read: Callable[[], Awaitable[T] | T],
    done: Callable[[T], object] = bool,
    *,
    timeout: float = 15.0,
    every: float = 0.05,
) -> T:
    """Read until `done(value)` (by default: until it is truthy); that value.

    `read` may be a coroutine function or a plain one (a metric, a file).
    """
    last: Any = None
    try:
        async with asyncio.timeout(timeout) as scope:
            while True:
                value = read()
                if inspect.isawaitable(value):
                    value = await value
                if done(value):
                    return value
                last = value
                await asyncio.sleep(every)
    except TimeoutError:
        if scope.expired():
            raise TimeoutError(f"still {last!r} after {timeout} s") from None
        raise


def until_sync(
    read: Callable[[], T],
    done: Callable[[T], object] = bool,
    *,
    timeout: float = 15.0,
    every: float = 0.05,
) -> T:
    """`until` for a test without an event loop: blocks between reads."""
    deadline = time.monotonic() + timeout
    while not done(value := read()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {value!r} after {timeout} s")
        time.sleep(every)
    return value


async def broadcast_row(
    db: asyncpg.Pool, query: str, *args: object, timeout: float = 10.0
) -> asyncpg.Record:
    """The row `query` finds once persist-and-broadcast is done with it (`broadcast_at` set)."""
    return await until(
        lambda: db.fetchrow(query, *args),
        lambda row: row is not None and row["broadcast_at"] is not None,
        timeout=timeout,
    )
