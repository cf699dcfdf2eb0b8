"""The throughput ladder and the mixed run (shares plus block candidates).

Ladder: for each offered rate in turn, a fresh job (so the rows stored for it
are that step's alone), solutions offered at that rate for `step_seconds`,
then a bounded wait for the node and Postgres to catch up. A step is
*sustained* when everything offered was delivered and stored and its p99
stayed within `ceiling_p99_ms` (a backlog that grows over the step shows as a
p99 of seconds). The ceiling is the highest sustained step; the ladder stops
at the first step that is not.

Mixed: ordinary shares (target below the job's proof target: stored, never
forwarded) offered at `mixed_rate` by some workers, while other workers, in a
client process of their own, offer a trickle of candidates (target at or
above the proof target: forwarded to the node). Candidate latency is what the
node sees; the shares are counted in Postgres.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from misc.bench.clients import Node, SwarmHandle, received, swarms, wait_received
from misc.bench.facts import bucket_quantile, latency_buckets, summary
from misc.bench.heights import Heights
from misc.bench.plan import LadderPlan, Plan
from misc.bench.stack import Endpoints
from misc.bench.steps import connect_shares, pipeline_metrics, say, server_metrics, stored

PROOF_TARGET = 100
SHARE_TARGET = 50  # below the proof target: stored, not forwarded
CANDIDATE_TARGET = 200  # meets the proof target: forwarded to the node
# The server's default rate limit is 200 frames/s per connection: leave headroom.
PER_WORKER_RATE = 100
CANDIDATE_WORKERS = 4


async def ladder_phases(
    endpoints: Endpoints, plan: Plan, ladder: LadderPlan, the_node: Node, heights: Heights
) -> dict[str, Any]:
    top = max([*ladder.rates, ladder.mixed_rate])
    workers = max(ladder.workers, math.ceil(top / PER_WORKER_RATE))
    processes = max(1, min(plan.processes, math.ceil(workers / 32)))
    metrics = pipeline_metrics(endpoints)
    # handles[0] holds the candidate workers, the others the share workers.
    async with swarms(processes + 1, endpoints.worker_url, plan.sources) as handles:
        sharers = handles[1:]
        shares = connect_shares(workers, len(sharers))
        await asyncio.gather(
            handles[0].call("connect", CANDIDATE_WORKERS),
            *(h.call("connect", n) for h, n in zip(sharers, shares, strict=True)),
        )
        connected = workers + CANDIDATE_WORKERS
        await wait_received(handles, connected, plan.drain_timeout)  # their latest job
        steps: list[dict[str, Any]] = []
        for rate in ladder.rates:
            await _fresh_job(handles, the_node, heights, connected, plan.drain_timeout)
            say(f"  ladder: {rate:g}/s for {ladder.step_seconds:g} s")
            before = {name: await server_metrics(url) for name, url in metrics.items()}
            step = await _offer(sharers, the_node, rate, ladder.step_seconds, CANDIDATE_TARGET)
            await the_node.wait_for(step["offered"], plan.drain_timeout)
            step.update(_delivered(the_node, step))
            step["stored"] = await stored(plan.postgres_dsn, step.pop("task_id"), step)
            after = {name: await server_metrics(url) for name, url in metrics.items()}
            step["cpu_us_per_solution"] = _cpu_per_solution(before, after, step["offered"])
            step["sustained"] = _sustained(step, ladder.ceiling_p99_ms)
            steps.append(step)
            if not step["sustained"]:
                break
        ceiling = max((s["offered_per_second"] for s in steps if s["sustained"]), default=0.0)
        mixed_rate = ladder.mixed_rate or 2 * ceiling
        mixed = None
        if mixed_rate > 0 and ladder.mixed_seconds > 0:
            await _fresh_job(handles, the_node, heights, connected, plan.drain_timeout)
            say(f"  mixed: shares {mixed_rate:g}/s + candidates {ladder.candidate_rate:g}/s")
            mixed = await _mixed(endpoints, handles, the_node, ladder, mixed_rate, plan)
    return {"steps": steps, "ceiling_per_second": ceiling, "mixed": mixed}


async def _fresh_job(
    handles: list[SwarmHandle], the_node: Node, heights: Heights, workers: int, timeout: float
) -> None:
    base = received(handles)
    await the_node.send_job(heights(), PROOF_TARGET)
    # Workers that just joined get the latest job first: at least one per worker.
    await wait_received(handles, base + workers, timeout)
    await asyncio.sleep(0.5)
    the_node.take()


async def _offer(
    handles: list[SwarmHandle], the_node: Node, rate: float, seconds: float, target: int
) -> dict[str, Any]:
    """Offer `rate` solutions/s spread over the swarms; counts what was sent."""
    per_process = rate / len(handles)
    started = time.monotonic()
    answers = await asyncio.gather(
        *(h.call("solutions", per_process, seconds, 1_000_000, target) for h in handles)
    )
    sent_seconds = time.monotonic() - started
    offered = sum(a["sent"] for a in answers)
    return {
        "rate": rate,
        "offered": offered,
        "send_errors": sum(a["errors"] for a in answers),
        "offered_per_second": round(offered / sent_seconds, 1),
        "started": started,
        "task_id": answers[0]["task_id"],
    }


def _delivered(the_node: Node, step: dict[str, Any]) -> dict[str, Any]:
    latencies = the_node.take()
    seconds = time.monotonic() - step.pop("started")
    return {
        "delivered": len(latencies),
        "delivered_per_second": round(len(latencies) / seconds, 1),
        "delivery_ratio": round(len(latencies) / max(1, step["offered"]), 4),
        "latency_ms": summary(latencies),
    }


def _sustained(step: dict[str, Any], p99_ms: float) -> bool:
    p99 = step["latency_ms"]["p99"]
    return (
        step["offered"] > 0
        and step["delivered"] >= step["offered"]
        and (step["stored"] is None or step["stored"] >= step["offered"])
        and p99 is not None
        and p99 <= p99_ms
    )


def _cpu_per_solution(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], offered: int
) -> dict[str, float | None]:
    """Each service's CPU microseconds per offered solution over the step and its drain."""
    result: dict[str, float | None] = {}
    for name in before:
        if "cpu" not in before[name] or "cpu" not in after[name] or not offered:
            result[name] = None
            continue
        result[name] = round((after[name]["cpu"] - before[name]["cpu"]) / offered * 1e6, 1)
    return result


async def _mixed(
    endpoints: Endpoints,
    handles: list[SwarmHandle],
    the_node: Node,
    ladder: LadderPlan,
    rate: float,
    plan: Plan,
) -> dict[str, Any]:
    seconds = ladder.mixed_seconds
    # Only candidates reach node_server in this run: its latency histogram is
    # theirs, from worker_server's receipt to the node's socket, without the
    # clients' own scheduling (all on the same cores).
    node_metrics = f"{endpoints.node_http}/metrics"
    before = await asyncio.to_thread(latency_buckets, node_metrics, "solution")
    candidates, shares = await asyncio.gather(
        _offer(handles[:1], the_node, ladder.candidate_rate, seconds, CANDIDATE_TARGET),
        _offer(handles[1:], the_node, rate, seconds, SHARE_TARGET),
    )
    await the_node.wait_for(candidates["offered"], plan.drain_timeout)
    candidates.update(_delivered(the_node, candidates))
    after = await asyncio.to_thread(latency_buckets, node_metrics, "solution")
    candidates["server_ms_at_most"] = {
        f"p{q}": bucket_quantile(before, after, q / 100) for q in (50, 99)
    }
    shares.pop("started")
    task_id = shares.pop("task_id")
    candidates.pop("task_id")
    total = {"offered": shares["offered"] + candidates["offered"]}
    rows = await stored(plan.postgres_dsn, task_id, total)
    return {
        "shares": shares,
        "candidates": candidates,
        "stored": rows,
        "offered_total": total["offered"],
    }
