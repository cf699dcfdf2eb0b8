"""Which lane a solution takes, and when worker_server sheds instead.

A solution's target is the worker's claim: only candidates within their
worker's budget (`CandidateBudgets`) take the candidate lane, the rest the
ordinary one, stored and delivered all the same. While the event loop runs
later than `shed_lag_ms`, everything but those candidates is shed: a share
is answered `overloaded` and not published, a handshake 503; candidates never
wait behind shares.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from aiohttp import web
from prometheus_client import Counter

from shared.errors import PublishRefused
from shared.errors import count as count_failure
from shared.metrics import SHED, SOLUTION_LANES
from shared.protocol import SolutionMessage
from shared.rabbit import Publisher
from shared.runtime.loop_lag import LOOP_LAG
from worker_server.limits import CandidateBudgets
from worker_server.store import KnownTasks

CANDIDATE = SOLUTION_LANES.labels(lane="candidate")
SHARE = SOLUTION_LANES.labels(lane="share")
UNKNOWN_TARGET = SOLUTION_LANES.labels(lane="unknown")
SHED_SHARES = SHED.labels(what="share")
SHED_HANDSHAKES = SHED.labels(what="handshake")
OVER_BUDGET = SOLUTION_LANES.labels(lane="over_budget")
log = logging.getLogger(__name__)


class Publishers(NamedTuple):
    ordinary: Publisher
    candidates: Publisher


def overloaded(app: web.Application, budget_ms: float) -> bool:
    """Whether the app's event loop runs later than `budget_ms` allows (0: never)."""
    return budget_ms > 0 and app[LOOP_LAG].latest * 1000 > budget_ms


def chosen_lane(
    tasks: KnownTasks, budgets: CandidateBudgets, message: SolutionMessage, remote: str
) -> Counter:
    """A solution's lane; a candidate's spends its worker's budget."""
    target = tasks.proof_target(message.task_id)
    if target is None:
        return UNKNOWN_TARGET
    if message.solution_target < target:
        return SHARE
    if not budgets.spend(remote, message.hardware_id):
        return OVER_BUDGET
    return CANDIDATE


async def publish(publishers: Publishers, body: bytes, lane: Counter, received_at: int) -> None:
    """A block candidate down its own lane, anything else down the ordinary one.

    The rest take the ordinary lane, stored and delivered all the same. A
    candidate whose lane refuses it (its publisher not connected, a nack)
    takes the ordinary lane instead: slower, never lost. Should both lanes
    end up holding it, it is still stored and broadcast once.
    """
    if lane is CANDIDATE:
        if await _candidate_lane_took(publishers.candidates, body, received_at):
            CANDIDATE.inc()
            return
        lane = SHARE
    await publishers.ordinary.publish(body, received_at)
    lane.inc()


async def _candidate_lane_took(candidates: Publisher, body: bytes, received_at: int) -> bool:
    try:
        await candidates.publish(body, received_at)
    except PublishRefused as refused:
        count_failure(refused)
        log.warning("candidate_lane_refused", extra={"error": str(refused)})
        return False
    return True
