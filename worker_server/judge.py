"""Judging a worker (or an address) by the share of bad messages over a time window.

Over a time window, not the last N messages: a worker that sends one bad
share among thousands of good ones a day must never be banned by an unlucky
run, and one that floods bad shares must not hide them behind a few good
ones long ago (miningcore issue #10). A window is a ring of counting slots
of a tenth of its length each: fixed memory per key, whatever the rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

SLOTS = 10


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a key is banned: its counts in the window when it crossed the line."""

    bad: int
    total: int
    window_seconds: float
    what: str  # what was counted: "frames"

    def __str__(self) -> str:
        share = math.floor(100 * self.bad / self.total)
        return f"{share}% of {self.total} {self.what} bad in {self.window_seconds:g} s"


class Window:
    """Good and bad counts of the last `seconds` (to a tenth of it)."""

    def __init__(self, seconds: float) -> None:
        self.width = seconds / SLOTS
        self.slots = [[-1, 0, 0] for _ in range(SLOTS)]  # [slot number, good, bad]
        self.last = -math.inf

    def add(self, now: float, bad: bool) -> None:
        number = int(now // self.width)
        slot = self.slots[number % SLOTS]
        if slot[0] != number:  # a slot from a previous round of the ring: start afresh
            slot[:] = [number, 0, 0]
        slot[2 if bad else 1] += 1
        self.last = now

    def counts(self, now: float) -> tuple[int, int]:
        """(good, bad) within the window ending at `now`."""
        number = int(now // self.width)
        live = [s for s in self.slots if number - SLOTS < s[0] <= number]
        return sum(s[1] for s in live), sum(s[2] for s in live)


class Judge:
    """Keeps a window per key and says when a key's bad share crosses the line."""

    def __init__(
        self,
        window_seconds: float,
        min_bad: int,
        bad_ratio: float,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.window_seconds = window_seconds
        self.min_bad = min_bad
        self.bad_ratio = bad_ratio
        self.clock = clock
        self.windows: dict[Hashable, Window] = {}

    def record(self, key: Hashable, bad: bool) -> Verdict | None:
        """Count one message of `key`; a verdict when it makes the key bannable."""
        now = self.clock()
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = Window(self.window_seconds)
        window.add(now, bad)
        if not bad:
            return None
        good, bad_count = window.counts(now)
        total = good + bad_count
        if bad_count < self.min_bad or bad_count < self.bad_ratio * total:
            return None
        del self.windows[key]  # judged: whatever comes after the ban starts afresh
        return Verdict(bad_count, total, self.window_seconds, self.what)

    def forget_idle(self) -> None:
        """Drop keys silent for a whole window (their counts are all gone anyway)."""
        horizon = self.clock() - self.window_seconds
        for key in [k for k, w in self.windows.items() if w.last < horizon]:
            del self.windows[key]
