"""A round of traffic with a fault in the middle, and the accounting that must hold after it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.support.fault_stack import FaultStack
from tests.support.poll import until
from tests.support.traffic import Round

SETTLE_SECONDS = 120.0
# Printed by the tests (pytest -s) and quoted in docs/reliability.md.
FIGURES: list[Figures] = []


@dataclass
class Figures:
    fault: str
    solutions_sent: int
    solutions_stored: int
    solutions_delivered: int
    solutions_refused: int
    jobs_sent: int
    jobs_stored: int
    jobs_refused: int
    close_codes: dict[Any, int]

    def __str__(self) -> str:
        return (
            f"{self.fault}: solutions sent {self.solutions_sent}, stored {self.solutions_stored}, "
            f"delivered {self.solutions_delivered}, refused {self.solutions_refused}; jobs sent "
            f"{self.jobs_sent}, stored {self.jobs_stored}, refused {self.jobs_refused}; "
            f"server closes {self.close_codes}"
        )


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record] | None:
    """One query on a fresh connection; None while Postgres is away (it may be restarting)."""
    try:
        connection = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def stored(stack: FaultStack, round_: Round, heights: list[int]) -> tuple[dict, dict] | None:
    solutions = await fetch(
        stack.postgres.dsn,
        "SELECT nonce, broadcast_at AS done FROM solution WHERE task_id = $1",
        round_.task_id,
    )
    jobs = await fetch(
        stack.postgres.dsn,
        "SELECT block_height, broadcast_at AS done FROM job WHERE block_height = ANY($1::bigint[])",
        heights,
    )
    if solutions is None or jobs is None:
        return None
    return {r["nonce"]: r["done"] for r in solutions}, {r["block_height"]: r["done"] for r in jobs}


async def run_round(
    stack: FaultStack,
    name: str,
    fault: Callable[[], Awaitable[None]],
    *,
    solutions: int = 1000,
    jobs: int = 100,
    fault_after: int = 300,
    kafka_loses_data: bool = False,
) -> tuple[Figures, Round]:
    """Stream, break something after `fault_after` solutions, wait for the stack to settle,
    then check: everything not refused stored once, broadcast, delivered once.

    `kafka_loses_data`: the fault restarts a broker that keeps records in memory only;
    what it acknowledged before the fault may be gone with it, so only what was
    broadcast after the fault must reach the clients (the rest is counted).
    """
    round_ = Round(stack.services["node_server"].ws, stack.services["worker_server"].ws)
    await round_.start()
    reached = asyncio.Event()

    def progress(sent: int) -> None:
        if sent >= fault_after:
            reached.set()

    traffic = asyncio.create_task(round_.run(solutions, jobs, progress))
    try:
        async with asyncio.timeout(SETTLE_SECONDS):
            await reached.wait()
            await fault()
            if kafka_loses_data:  # what the restarted broker acknowledged must all arrive
                round_.cut = (await fetch(stack.postgres.dsn, "SELECT now()"))[0][0]
            await round_.sent.wait()
            state = await until(
                lambda: _settled(stack, round_), lambda state: state is not None, every=0.2
            )
    except TimeoutError:
        raise AssertionError(f"{name}: never settled; {await _progress(stack, round_)}") from None
    finally:
        round_.stop.set()
        async with asyncio.timeout(30):
            await traffic
    solutions_stored, jobs_stored = state
    figures = Figures(
        fault=name,
        solutions_sent=len(round_.solutions.sent),
        solutions_stored=len(solutions_stored),
        solutions_delivered=len(round_.solutions.delivered),
        solutions_refused=round_.solutions.check(set(solutions_stored)),
        jobs_sent=len(round_.jobs.sent),
        jobs_stored=len(jobs_stored),
        jobs_refused=round_.jobs.check(set(jobs_stored)),
        close_codes=dict(round_.solutions.closes() + round_.jobs.closes()),
    )
    _check_deliveries(round_, solutions_stored, jobs_stored)
    FIGURES.append(figures)
    print(figures)
    return figures, round_


async def _settled(stack: FaultStack, round_: Round) -> tuple | None:
    """Everything that must be stored is, all of it broadcast and seen by the listeners."""
    state = await stored(stack, round_, round_.jobs.sent)
    if state is None:
        return None
    solutions, jobs = state
    if not (round_.solutions.expected() <= set(solutions) and all(solutions.values())):
        return None
    if not (round_.jobs.expected() <= set(jobs) and all(jobs.values())):
        return None
    delivered = set(round_.solutions.delivered)
    if not _deliverable(solutions, round_.cut) <= delivered:
        return None
    heights = {_height(frame) for frames in round_.job_frames for frame in frames}
    newest = max(jobs, default=None)
    if newest is not None and newest in _deliverable(jobs, round_.cut) and newest not in heights:
        return None
    return state


def _deliverable(broadcast_at: dict, cut: Any) -> set:
    """What must reach the clients: all of it, or what was broadcast after `cut`."""
    return {key for key, at in broadcast_at.items() if cut is None or at > cut}


async def _progress(stack: FaultStack, round_: Round) -> str:
    state = await stored(stack, round_, round_.jobs.sent)
    if state is None:
        return "Postgres unreachable"
    solutions, jobs = state
    seen = {_height(frame) for frames in round_.job_frames for frame in frames}
    sol_done = sum(bool(at) for at in solutions.values())
    job_done = sum(bool(at) for at in jobs.values())
    return (
        f"solutions sent {len(round_.solutions.sent)}, must store "
        f"{len(round_.solutions.expected())}, stored {len(solutions)}, broadcast {sol_done}, "
        f"delivered {len(set(round_.solutions.delivered))}; jobs sent {len(round_.jobs.sent)}, "
        f"stored {len(jobs)}, broadcast {job_done}, newest seen: {max(jobs, default=0) in seen}"
    )


def _height(frame: dict) -> int:
    return frame["epoch_challenge"]["epoch_number"]


def _check_deliveries(round_: Round, solutions: dict, jobs: dict) -> None:
    delivered = round_.solutions.delivered
    for frames in round_.node_frames:
        assert len(frames) == len(set(frames)), "a solution reached a node connection twice"
    assert set(delivered) <= set(solutions), "the node got a solution that is not stored"
    # A node that reconnected re-sent its job and recovered what it missed meanwhile.
    assert set(delivered) >= _deliverable(solutions, round_.cut)
    # Workers get only newer jobs: strictly increasing heights, never one twice.
    for frames in round_.job_frames:
        heights = [_height(frame) for frame in frames]
        for earlier, later in itertools.pairwise(heights):
            assert later > earlier, "a worker got an older or repeated job"


def assert_clean_logs(stack: FaultStack) -> None:
    """No tracebacks, no tasks destroyed while pending, in any service's log."""
    for name, text in stack.logs().items():
        for bad in ("Traceback", "Task was destroyed but it is pending", "was never awaited"):
            assert bad not in text, f"{name} logged {bad!r}:\n{_around(text, bad)}"


def _around(text: str, needle: str) -> str:
    at = text.index(needle)
    return text[max(0, at - 1500) : at + 1500]
