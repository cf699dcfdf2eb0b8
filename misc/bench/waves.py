"""What a swarm's workers do in the storm and soak phases: waves, blips and churn.

A wave opens many workers at once, each retrying a refused or broken
handshake with a short backoff (Retry-After when the server names one), as
provers do, until it holds the current job. A blip aborts every connection
at once, with no close frame, as a network blip leaves them. Churn is the
soak's traffic: workers that come, send a few shares and sometimes a
candidate, then close or drop, and come back.

Also the swarm process's entry point (`swarm_main`): the commands it takes
over its pipe are the swarm's own and these phases.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing.connection
import random
import time
from collections import defaultdict
from typing import Any

import aiohttp

from misc.bench.swarm import SimulatedWorker, Swarm

REFUSED = {429, 503}  # a server that sheds load says so; provers wait and retry
RETRY_AFTER_CAP = 5.0
BACKOFF_CAP = 2.0
FIRST_JOB_TIMEOUT = 30.0
SHARE_TARGET = 50  # below the proof target: stored, not forwarded
CANDIDATE_TARGET = 200  # at or above it: forwarded to the node
CHURN_IDENTITIES = 2000  # workers come back under a name they used before


class Tally:
    """Failed handshakes by kind, and workers that never got the job."""

    def __init__(self) -> None:
        self.refused: dict[str, int] = defaultdict(int)
        self.broken: dict[str, int] = defaultdict(int)

    def failed(self, error: Exception) -> float | None:
        """Count `error`; the server's Retry-After (seconds) when it gave one."""
        if isinstance(error, aiohttp.WSServerHandshakeError) and error.status in REFUSED:
            retry_after = _seconds((error.headers or {}).get("Retry-After"))
            suffix = "" if retry_after is not None else " without Retry-After"
            self.refused[f"{error.status}{suffix}"] += 1
            return retry_after
        if isinstance(error, aiohttp.WSServerHandshakeError):
            self.broken[f"HTTP {error.status}"] += 1
        else:
            self.broken[type(error).__name__] += 1
        return None

    def figures(self) -> dict[str, Any]:
        return {"refused": dict(self.refused), "broken": dict(self.broken)}


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def backoff(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP) * random.uniform(1.0, 1.5)
    return min(BACKOFF_CAP, 0.1 * 2**attempt) * random.uniform(0.5, 1.0)


async def join(
    swarm: Swarm, number: int, gate: asyncio.Semaphore, tally: Tally, deadline: float
) -> SimulatedWorker | None:
    """Connect worker `number` until it holds a job (or `deadline`, monotonic, passes)."""
    session = swarm.sessions[number % len(swarm.sessions)]
    for attempt in itertools.count():
        if time.monotonic() >= deadline:
            return None
        try:
            async with gate, asyncio.timeout(FIRST_JOB_TIMEOUT):
                worker = await swarm.open(session, f"bench-{swarm.index}-{number}")
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            retry_after = tally.failed(error)
        else:
            if await _first_job(swarm, worker):
                return worker
            tally.broken["no job on the connection"] += 1
            await swarm.close_worker(worker)
            retry_after = None
        await asyncio.sleep(backoff(attempt, retry_after))
    return None


async def _first_job(swarm: Swarm, worker: SimulatedWorker) -> bool:
    """Whether the job came before the socket ended or the bound passed."""
    try:
        async with asyncio.timeout(FIRST_JOB_TIMEOUT):
            return await swarm.read(worker, until_job=True)
    except TimeoutError:
        return False


async def wave(swarm: Swarm, count: int, in_flight: int, timeout: float) -> dict[str, Any]:
    """`count` workers at once, at most `in_flight` handshakes open; each until it holds a job."""
    gate = asyncio.Semaphore(in_flight)
    tally = Tally()
    deadline = time.monotonic() + timeout
    joined = await asyncio.gather(*(join(swarm, n, gate, tally, deadline) for n in range(count)))
    workers = [w for w in joined if w is not None]
    for worker in workers:
        worker.reader = asyncio.create_task(swarm.read(worker))
    swarm.workers.extend(workers)
    return {
        **tally.figures(),
        "held_job": len(workers),
        "without_job": count - len(workers),
        "last_job_ns": max((w.first_job_ns or 0 for w in workers), default=None),
        "ready_ms": [((w.first_job_ns or 0) - w.welcomed_ns) / 1e6 for w in workers],
    }


async def blip(swarm: Swarm, in_flight: int, timeout: float) -> dict[str, Any]:
    """Drop every connection at once, no close frame; then all come back in one wave."""
    count = len(swarm.workers)
    for worker in swarm.workers:
        abort(worker.ws)
    await swarm.forget_workers()
    return await wave(swarm, count, in_flight, timeout)


def abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    # aiohttp has no public abort: a blip is the socket gone, without a close frame.
    connection = ws._conn
    if connection is not None and connection.transport is not None:
        connection.transport.abort()


async def churn(
    swarm: Swarm, rate: float, seconds: float, shares: int, candidate_every: int
) -> dict[str, Any]:
    """Start `rate` worker visits a second for `seconds`; each one `visit`."""
    counts: dict[str, int] = defaultdict(int)
    tally = Tally()
    visits: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    for number in itertools.count():
        due = started + number / rate
        if due - started >= seconds:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        candidate = candidate_every > 0 and number % candidate_every == 0
        task = asyncio.create_task(visit(swarm, number, shares, candidate, counts, tally))
        visits.add(task)
        task.add_done_callback(visits.discard)
    if visits:
        await asyncio.wait(visits, timeout=FIRST_JOB_TIMEOUT * 2)
    for task in visits:  # still open after the bound: counted, then ended
        task.cancel()
        counts["unfinished"] += 1
    return {**counts, **tally.figures(), "error_frames": dict(swarm.error_frames)}


async def visit(
    swarm: Swarm,
    number: int,
    shares: int,
    candidate: bool,
    counts: dict[str, int],
    tally: Tally,
) -> None:
    """One worker's visit: join, wait for the job, a few shares, maybe a candidate, leave."""
    session = swarm.sessions[number % len(swarm.sessions)]
    try:
        async with asyncio.timeout(FIRST_JOB_TIMEOUT):
            worker = await swarm.open(session, f"churn-{swarm.index}-{number % CHURN_IDENTITIES}")
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        tally.failed(error)
        return
    try:
        await _stay(swarm, worker, shares, candidate, counts)
    finally:
        if number % 2:
            abort(worker.ws)
            counts["aborted"] += 1
        else:
            await swarm.close_worker(worker)
            counts["closed"] += 1


async def _stay(
    swarm: Swarm, worker: SimulatedWorker, shares: int, candidate: bool, counts: dict[str, int]
) -> None:
    if not await _first_job(swarm, worker):
        counts["no job on the connection"] += 1
        return
    counts["visits"] += 1
    try:
        for _ in range(shares):
            await swarm.send_solution(worker, SHARE_TARGET)
            counts["shares"] += 1
        if candidate:
            await swarm.send_solution(worker, CANDIDATE_TARGET)
            counts["candidates"] += 1
    except (ConnectionError, RuntimeError):
        counts["send errors"] += 1
        return
    # A short stay, reading: a new job or an error frame (counted) may come meanwhile.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(random.uniform(0.1, 1.0)):
            await swarm.read(worker)


WAVES = {"wave": wave, "blip": blip, "churn": churn}


async def _serve(pipe: multiprocessing.connection.Connection, swarm: Swarm) -> None:
    await swarm.start_sessions()
    try:
        while True:
            command, args = await asyncio.to_thread(pipe.recv)
            if command == "close":
                break
            if command == "connect":
                pipe.send(await swarm.connect(*args))
            elif command == "ready":
                pipe.send(await swarm.ready_times(*args))
            elif command == "receipts":
                pipe.send(swarm.take_receipts())
            elif command == "solutions":
                pipe.send(await swarm.solutions(*args))
            elif command in WAVES:
                pipe.send(await WAVES[command](swarm, *args))
    finally:
        await swarm.close()
        pipe.send("closed")


def swarm_main(
    pipe: multiprocessing.connection.Connection,
    index: int,
    url: str,
    sources: list[str],
    received: Any,
) -> None:
    """Entry point of a swarm process (multiprocessing target)."""
    from misc.bench.facts import raise_fd_limit

    raise_fd_limit()
    asyncio.run(_serve(pipe, Swarm(index, url, sources, received)))
