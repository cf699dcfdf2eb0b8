"""Bounded exponential backoff with jitter, written once for every retry loop."""

from __future__ import annotations

import asyncio
import random

# A task or process that ran this long before failing again starts afresh: its
# backoff and its count of failures in a row are reset.
HEALTHY_RUN_SECONDS = 60.0


class Backoff:
    def __init__(self, initial: float = 0.1, maximum: float = 10.0, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._delay = initial

    def reset(self) -> None:
        self._delay = self.initial

    def next_delay(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * self.factor, self.maximum)
        return delay * random.uniform(0.5, 1.0)

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())
