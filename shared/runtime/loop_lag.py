"""How late the event loop runs: the first sign that a server has more to do than time.

A timer asks to wake every `SAMPLE_SECONDS`; how much later than asked it
wakes is what every other callback of the loop waited too. Each sample is
observed in `wspool_event_loop_lag_seconds`, and the latest one is shown in
`/readyz`, in `wspool_event_loop_lag_now_seconds` and in the instance row.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from shared.metrics import EVENT_LOOP_LAG, EVENT_LOOP_LAG_NOW
from shared.runtime.tasks import owned

# Often enough to see a burst of 10 ms, rare enough to cost nothing (ten
# timer callbacks a second).
SAMPLE_SECONDS = 0.1


class LoopLag:
    """The latest lag sample of the running loop, in seconds."""

    def __init__(self, sample_seconds: float = SAMPLE_SECONDS) -> None:
        self.sample_seconds = sample_seconds
        self.latest = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.sample_seconds
            await asyncio.sleep(self.sample_seconds)
            self.latest = max(0.0, loop.time() - due)
            EVENT_LOOP_LAG.observe(self.latest)
            EVENT_LOOP_LAG_NOW.set(self.latest)


LOOP_LAG = web.AppKey("loop_lag", LoopLag)


async def watch_loop_lag(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: the sampling task, owned by the app (it cannot fail: it sleeps)."""
    lag = app.setdefault(LOOP_LAG, LoopLag())
    async with owned(lag.run(), "loop-lag"):
        yield
