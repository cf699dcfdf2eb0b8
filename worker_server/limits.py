"""Per-worker solution limits: what one worker can make us store and forward.

A solution over a limit is not published; the worker gets a `rate_limited`
error frame naming the limit and keeps its connection (a prover that is merely
fast must not lose its job). Limited solutions do not count toward a ban.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Hashable
from typing import Any

from shared.errors import ErrorCode
from shared.metrics import SOLUTIONS_LIMITED
from shared.websocket.access import TokenBucket
from shared.websocket.connection import Connection
from worker_server.settings import WorkerServerSettings

LIMITED = {limit: SOLUTIONS_LIMITED.labels(limit=limit) for limit in ("per_second", "per_task")}
# Solutions a connection remembers to tell a resend: ~100 bytes each, and a
# real prover sends a few per task.
RECENT_PER_CONNECTION = 1024
# (identity, task) pairs counted per process: tasks change every block, so
# the oldest pairs are long finished when they are dropped.
TASK_COUNT_CAPACITY = 65536


class RecentlySent:
    """(task, nonce) pairs one connection sent lately; the oldest are forgotten."""

    def __init__(self, capacity: int = RECENT_PER_CONNECTION) -> None:
        self.capacity = capacity
        self._seen: collections.OrderedDict[tuple[uuid.UUID, str], None] = collections.OrderedDict()

    def __contains__(self, key: tuple[uuid.UUID, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[uuid.UUID, str]) -> None:
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


class TaskCounts:
    """Accepted solutions per (worker identity, task), for the most recent pairs."""

    def __init__(self, capacity: int = TASK_COUNT_CAPACITY) -> None:
        self.capacity = capacity
        self._counts: collections.OrderedDict[tuple[str, uuid.UUID], int] = (
            collections.OrderedDict()
        )

    def get(self, identity: str, task_id: uuid.UUID) -> int:
        return self._counts.get((identity, task_id), 0)

    def add(self, identity: str, task_id: uuid.UUID) -> None:
        key = (identity, task_id)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._counts.move_to_end(key)
        if len(self._counts) > self.capacity:
            self._counts.popitem(last=False)


class CandidateBudgets:
    """Candidate-lane solutions per minute, per worker and per address.

    A solution's target is its sender's claim, so the lane that never waits
    behind shares is earned: a worker (its address and hardware_id, so no one
    can spend another address's budget) gets `per_worker` a minute, an
    address, all its workers together, `per_address`. Past either, a
    candidate takes the share lane: stored and still delivered, later.
    """

    def __init__(self, per_worker: int, per_address: int, capacity: int = TASK_COUNT_CAPACITY):
        self.per_worker = per_worker
        self.per_address = per_address
        self.capacity = capacity
        self._workers: collections.OrderedDict[tuple[str, str], TokenBucket] = (
            collections.OrderedDict()
        )
        self._addresses: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def spend(self, remote: str, identity: str) -> bool:
        """Whether this candidate may take the candidate lane (and count against both)."""
        # The worker's own budget first: one over it spends nothing of its address's.
        if not self._bucket(self._workers, (remote, identity), self.per_worker).take():
            return False
        return self._bucket(self._addresses, remote, self.per_address).take()

    def _bucket(
        self, buckets: collections.OrderedDict[Any, TokenBucket], key: Hashable, per_minute: int
    ) -> TokenBucket:
        """`key`'s bucket, the most recently used kept; forgetting one only refills it."""
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = TokenBucket(per_minute / 60, per_minute)
            if len(buckets) > self.capacity:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
        return bucket


class SolutionLimits:
    """One connection's limits: its rate, its resends, its share of each task."""

    def __init__(self, settings: WorkerServerSettings, per_task: TaskCounts) -> None:
        self.bucket = TokenBucket(settings.solutions_per_second, settings.solutions_burst)
        self.rate = settings.solutions_per_second
        self.max_per_task = settings.max_solutions_per_task
        self.per_task = per_task
        self.recent = RecentlySent()

    def over_rate(self, connection: Connection) -> bool:
        """True (and the worker told) when this solution is over the rate."""
        if self.bucket.take():
            return False
        _limited(connection, "per_second", f"more than {self.rate:g} solutions per second")
        return True

    def over_task(self, connection: Connection, identity: str, task_id: uuid.UUID) -> bool:
        """True (and the worker told) when this worker has had its share of the task."""
        if self.per_task.get(identity, task_id) < self.max_per_task:
            return False
        _limited(connection, "per_task", f"more than {self.max_per_task} solutions for this task")
        return True

    def accepted(self, identity: str, task_id: uuid.UUID, nonce: str) -> None:
        self.per_task.add(identity, task_id)
        self.recent.add((task_id, nonce))


def _limited(connection: Connection, limit: str, detail: str) -> None:
    LIMITED[limit].inc()
    connection.send_error(ErrorCode.RATE_LIMITED, f"{limit}: {detail}")
