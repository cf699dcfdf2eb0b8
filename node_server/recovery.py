"""Recovery: a node that (re)sends its job gets the solutions it missed.

A node's expectations live on its connection, so a node that reconnects (a
deploy, a load balancer, a blip) would never see a solution found while it
was away. Re-sending the current job, which nodes do after a reconnect, is the
signal: node_server then sends the solutions already found for that height
and challenge, at or above the job's proof target and within the wait time,
that this connection has not received yet, newest first, at most
`max_recovered_solutions` of them. Recent ones come from memory (what the
shared fan-out read, per height, bounded); the rest, including those older
than the window or from before a restart, come from Postgres in one indexed
query per job. The connection's filter keeps each solution to once, and the
frames go out paced by the node's outbox (`Connection.send_paced`): however
many there are, they never fill it and drop the node.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import orjson
from aiohttp import web

from node_server.expectations import PRUNE_INTERVAL_SECONDS
from node_server.solutions import SolutionUpdate
from shared.db import POOL
from shared.errors import DatabaseUnavailable, count, down_as
from shared.fanout.stream import Fanout
from shared.metrics import RECOVERY_WINDOW
from shared.protocol import NodeJob, now_ns

log = logging.getLogger(__name__)
PRUNE_INTERVAL_NS = int(PRUNE_INTERVAL_SECONDS * 1e9)
QUERY_TIMEOUT_SECONDS = 5.0

# Materialized: the height's solutions are found through their task first; a
# plan walking the whole table backwards by id to fill the LIMIT would not be.
RECOVERABLE = """
WITH found AS MATERIALIZED (
  SELECT s.id, s.task_id, s.nonce, s.solution, s.solution_target, s.created_at,
         j.challenge_digest
  FROM job j JOIN solution s ON s.task_id = j.task_id
  WHERE j.block_height = $1 AND j.retired_at IS NULL AND s.solution_target >= $2
    AND (j.challenge_digest IS NULL OR j.challenge_digest = $3)
    AND s.created_at > now() - make_interval(secs => $4)
)
SELECT * FROM found ORDER BY id DESC LIMIT $5
"""


class RecoveryWindow:
    """The newest solutions the fan-out delivered, per height: a fan-out subscriber.

    Bounded per height and in all: past `max_solutions` the oldest height's
    oldest go first (Postgres still has them), so a new job every few seconds
    with a flow of shares holds at most `max_solutions`, not one full height
    per job of the whole wait time.
    """

    def __init__(self, per_height: int, wait_seconds: float, max_solutions: int = 20_000) -> None:
        self.per_height = per_height
        self.max_solutions = max_solutions
        self.wait_ns = int(wait_seconds * 1e9)
        self._by_height: dict[int, collections.deque[SolutionUpdate]] = {}
        self._held = 0
        self._pruned_at = 0

    def offer(self, update: SolutionUpdate) -> None:
        bucket = self._by_height.get(update.solution_height)
        if bucket is None:
            bucket = self._by_height[update.solution_height] = collections.deque(
                maxlen=self.per_height
            )
        if len(bucket) < self.per_height:
            self._held += 1
        bucket.append(update)
        while self._held > self.max_solutions:
            self._drop_oldest()
        self._prune(now_ns())
        RECOVERY_WINDOW.set(self._held)

    def __len__(self) -> int:
        return self._held

    def _drop_oldest(self) -> None:
        height = next(iter(self._by_height))  # heights in the order first found
        bucket = self._by_height[height]
        bucket.popleft()
        self._held -= 1
        if not bucket:
            del self._by_height[height]

    def at(self, height: int) -> list[SolutionUpdate]:
        """Those of `height` found within the wait time, newest first."""
        oldest = now_ns() - self.wait_ns
        return [u for u in reversed(self._by_height.get(height, ())) if u.received_at > oldest]

    def _prune(self, now: int) -> None:
        """Forget heights with nothing found within the wait time; at most once a second."""
        if now - self._pruned_at < PRUNE_INTERVAL_NS:
            return
        self._pruned_at = now
        stale = [h for h, b in self._by_height.items() if b[-1].received_at <= now - self.wait_ns]
        for height in stale:
            self._held -= len(self._by_height.pop(height))


RECENT = web.AppKey("recent_solutions", RecoveryWindow)


def keep_recent(
    fanout: Fanout[SolutionUpdate], window: RecoveryWindow
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Cleanup context: the window subscribed to the fan-out while the app runs."""

    async def context(_app: web.Application) -> AsyncIterator[None]:
        await fanout.subscribe(window)
        try:
            yield
        finally:
            await fanout.unsubscribe(window)

    return context


async def missed(
    app: web.Application, job: NodeJob, challenge_digest: str, wait_seconds: float, limit: int
) -> AsyncIterator[tuple[str, SolutionUpdate]]:
    """What was already found for `job`, with its source, newest first: memory, then
    Postgres; at most `limit` from each (the caller stops at `limit` sent).

    Best effort: with Postgres away, what memory holds comes and live
    solutions still flow; the job itself was accepted either way.
    """
    window = app.get(RECENT)
    if window is not None:
        for update in window.at(job.block_height)[:limit]:
            yield "memory", update
    try:
        async with down_as(DatabaseUnavailable), asyncio.timeout(QUERY_TIMEOUT_SECONDS):
            rows = await app[POOL].fetch(
                RECOVERABLE,
                job.block_height,
                job.proof_target,
                challenge_digest,
                wait_seconds,
                limit,
            )
    except DatabaseUnavailable as error:
        count(error)
        log.warning("recovery_query_failed", extra={"error": str(error)})
        return
    for update in _updates(rows, job.block_height):
        yield "database", update


def _updates(rows: list[asyncpg.Record], height: int) -> Iterator[SolutionUpdate]:
    for row in rows:
        yield SolutionUpdate(
            solution_height=height,
            solution_target=row["solution_target"],
            key=(row["task_id"], row["nonce"]),
            # The stored object: the same solution, keys in Postgres' order.
            frame=orjson.dumps(row["solution"]),
            received_at=int(row["created_at"].timestamp() * 1e9),
            challenge_digest=row["challenge_digest"],
        )
