"""Which solutions a node connection wants: the heights and targets it waits for.

Both fan-out modes use this filter, so nodes see identical results either way.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field

from node_server.solutions import SolutionUpdate
from shared.metrics import EXPECTATIONS_EVICTED

# Expired entries are dropped at most this often, by whichever call comes next:
# pruning on every call would walk every height per solution.
PRUNE_INTERVAL_SECONDS = 1.0
# A job re-sent unchanged recovers at most this often: what the live fan-out
# already delivered needs no second look, and a node that repeats itself in a
# loop must not cost a database query per frame. Later repeats catch up.
REPEAT_RECOVERY_SECONDS = 1.0


@dataclass(slots=True)
class _Job:
    proof_target: int
    challenge_digest: str | None  # None: any challenge at the height
    expires: float
    recovered_at: float  # when what was already found was last sent for it


@dataclass(slots=True)
class _Expectation:
    jobs: list[_Job] = field(default_factory=list)
    delivered: set[bytes] = field(default_factory=set)  # `remembered` keys


def remembered(key: tuple[uuid.UUID, str]) -> bytes:
    """What a connection keeps of a delivered solution: 16 bytes, whatever the nonce.

    A (UUID, str) tuple costs ~280 bytes a solution; a 128-bit digest ~50 (both
    measured in docs/benchmarks.md), and two solutions sharing one is not a
    practical event.
    """
    task_id, nonce = key
    return hashlib.blake2b(task_id.bytes + nonce.encode(), digest_size=16).digest()


class NodeExpectations:
    """The heights and targets one node connection waits for, and what it already got.

    A solution is accepted when a confirmed job on this connection had the same
    height and challenge, a proof target at or below the solution's, and has
    not expired; each (task_id, nonce) at most once. A solution whose record
    carries no challenge digest (written before there was one) matches any
    challenge at its height.

    Bounded: at most `max_jobs_per_height` jobs (targets, challenges) per
    height, the oldest dropped; at most `max_heights` heights and
    `max_delivered` remembered solutions; beyond either, the oldest height is
    no longer waited for (so
    it gets nothing more for it rather than anything twice), counted in a metric.
    """

    def __init__(
        self,
        wait_seconds: float,
        max_heights: int = 1024,
        max_delivered: int = 100_000,
        max_jobs_per_height: int = 16,
    ) -> None:
        self.wait_seconds = wait_seconds
        self.max_heights = max_heights
        self.max_delivered = max_delivered
        self.max_jobs_per_height = max_jobs_per_height
        self._by_height: dict[int, _Expectation] = {}
        self._delivered = 0
        self._pruned_at = 0.0

    def waits_for(
        self, height: int, proof_target: int, digest: str | None, now: float | None = None
    ) -> bool:
        """Whether this connection already waits for this very job: a repeat."""
        now = time.monotonic() if now is None else now
        return self._same(height, proof_target, digest, now) is not None

    def expect(
        self,
        block_height: int,
        proof_target: int,
        challenge_digest: str | None = None,
        *,
        now: float | None = None,
    ) -> bool:
        """Wait for solutions answering this job; whether to recover for it now.

        A job this connection already waits for (a repeat) has its wait
        renewed in place, so repeats add nothing; it recovers at most once
        per `REPEAT_RECOVERY_SECONDS`. A new job always recovers.
        """
        now = time.monotonic() if now is None else now
        same = self._same(block_height, proof_target, challenge_digest, now)
        if same is not None:
            same.expires = now + self.wait_seconds
            if now - same.recovered_at < REPEAT_RECOVERY_SECONDS:
                return False
            same.recovered_at = now
            return True
        self._prune(now)
        expectation = self._by_height.setdefault(block_height, _Expectation())
        expectation.jobs = [job for job in expectation.jobs if now < job.expires]
        expectation.jobs.append(
            _Job(proof_target, challenge_digest, now + self.wait_seconds, recovered_at=now)
        )
        del expectation.jobs[: -self.max_jobs_per_height]  # many targets at one height
        while len(self._by_height) > self.max_heights:  # a node that floods heights
            self._evict_oldest()
        return True

    def _same(
        self, block_height: int, proof_target: int, challenge_digest: str | None, now: float
    ) -> _Job | None:
        expectation = self._by_height.get(block_height)
        if expectation is None:
            return None
        for job in expectation.jobs:
            if (
                job.proof_target == proof_target
                and job.challenge_digest == challenge_digest
                and now < job.expires
            ):
                return job
        return None

    def accept(self, update: SolutionUpdate, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now - self._pruned_at >= PRUNE_INTERVAL_SECONDS:  # expired ones leave without a job
            self._prune(now)
        expectation = self._by_height.get(update.solution_height)
        if expectation is None:
            return False
        key = remembered(update.key)
        if key in expectation.delivered:
            return False
        if not any(_answers(job, update, now) for job in expectation.jobs):
            return False
        expectation.delivered.add(key)
        self._delivered += 1
        while self._delivered > self.max_delivered:
            self._evict_oldest()
        return True

    def __len__(self) -> int:
        return len(self._by_height)

    @property
    def delivered(self) -> int:
        """Solutions remembered, over every height still waited for."""
        return self._delivered

    def _evict_oldest(self) -> None:
        self._forget(next(iter(self._by_height)))
        EXPECTATIONS_EVICTED.inc()

    def _forget(self, height: int) -> None:
        self._delivered -= len(self._by_height.pop(height).delivered)

    def _prune(self, now: float) -> None:
        self._pruned_at = now
        for height in [
            h for h, e in self._by_height.items() if all(job.expires <= now for job in e.jobs)
        ]:
            self._forget(height)


def _answers(job: _Job, update: SolutionUpdate, now: float) -> bool:
    return (
        update.solution_target >= job.proof_target
        and now < job.expires
        and (
            update.challenge_digest is None
            or job.challenge_digest is None
            or update.challenge_digest == job.challenge_digest
        )
    )
