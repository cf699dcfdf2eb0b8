"""The benchmark's phases against one stack: fan-out per worker count, solutions, ladder,
storm, soak, recovery."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from misc.bench.clients import Node, SwarmHandle, node, received, swarms, wait_received
from misc.bench.facts import summary
from misc.bench.heights import Heights
from misc.bench.ladder import ladder_phases
from misc.bench.plan import Plan
from misc.bench.recovery import recovery_phase
from misc.bench.stack import Endpoints
from misc.bench.steps import connect_shares, pipeline_metrics, say, server_metrics, stored
from misc.bench.storm import soak_phase, storm_phase

SETTLE_SECONDS = 2.0
READY_PROBES = 50
PROOF_TARGET = 100
SOLUTION_TARGET = 200


async def run_stack(endpoints: Endpoints, plan: Plan, worker_counts: list[int]) -> dict[str, Any]:
    """Every phase against one running stack; returns the figures.

    The jobs it sent are retired at the end, whatever happened.
    """
    heights = await Heights.above_newest(plan.postgres_dsn)
    try:
        return await _phases(endpoints, plan, worker_counts, heights)
    finally:
        retired = await heights.retire(endpoints.node_http, plan.postgres_dsn, plan.admin_token)
        say(f"  retired the {retired} jobs sent")


async def _phases(
    endpoints: Endpoints, plan: Plan, worker_counts: list[int], heights: Heights
) -> dict[str, Any]:
    async with node(endpoints.node_url) as the_node:
        await the_node.send_job(heights(), PROOF_TARGET)  # a latest job for ready times
        await asyncio.sleep(1.0)
        results: dict[str, Any] = {"fanout": []}
        for count in worker_counts if "fanout" in plan.phases else []:
            say(f"  fan-out to {count} workers")
            results["fanout"].append(await fanout_phase(endpoints, plan, the_node, count, heights))
        if "solutions" in plan.phases:
            say(f"  solutions with {plan.solution_workers} workers")
            results["solutions"] = await solution_phases(endpoints, plan, the_node, heights)
        if "ladder" in plan.phases and plan.ladder is not None:
            results["ladder"] = await ladder_phases(endpoints, plan, plan.ladder, the_node, heights)
        for count in plan.storm_workers if "storm" in plan.phases else ():
            say(f"  storm: {count} workers at once")
            results.setdefault("storm", []).append(await storm_phase(endpoints, plan, count))
        if "soak" in plan.phases and plan.soak_seconds > 0:
            say(f"  soak: {plan.soak_rate:g} connections/s for {plan.soak_seconds:g} s")
            results["soak"] = await soak_phase(endpoints, plan, the_node, heights)
    if plan.recovery_rounds and "recovery" in plan.phases:
        say(f"  recovery: {plan.recovery_rounds} reconnects")
        results["recovery"] = await recovery_phase(
            endpoints.node_url,
            endpoints.worker_url,
            plan.postgres_dsn,
            plan.recovery_rounds,
            heights,
        )
    return results


async def _connect(handles: list[SwarmHandle], count: int) -> dict[str, Any]:
    shares = connect_shares(count, len(handles))
    answers = await asyncio.gather(
        *(h.call("connect", share) for h, share in zip(handles, shares, strict=True))
    )
    failures: dict[str, int] = {}
    for answer in answers:
        for name, n in answer["failures"].items():
            failures[name] = failures.get(name, 0) + n
    return {"connected": sum(a["connected"] for a in answers), "failures": failures}


async def fanout_phase(
    endpoints: Endpoints, plan: Plan, the_node: Node, count: int, heights: Heights
) -> dict[str, Any]:
    metrics_url = f"{endpoints.worker_http}/metrics"
    processes = max(1, min(plan.processes, math.ceil(count / 250)))
    async with swarms(processes, endpoints.worker_url, plan.sources) as handles:
        before = await server_metrics(metrics_url)
        started = time.monotonic()
        connect = await _connect(handles, count)
        connect_seconds = time.monotonic() - started
        storm = await asyncio.gather(*(h.call("ready", 10.0) for h in handles))
        storm_ms = [ms for answer in storm for ms in answer["ready_ms"]]
        await asyncio.sleep(SETTLE_SECONDS)
        idle = await server_metrics(metrics_url)
        # Ready time proper: workers joining one by one a server that holds `count`.
        joined = await handles[0].call("connect", READY_PROBES, 1)
        ready = await handles[0].call("ready", 10.0, joined["first"])
        await asyncio.gather(*(h.call("receipts") for h in handles))  # forget the latest job
        connected = connect["connected"] + joined["connected"]
        sent: dict[int, int] = {}
        base = received(handles)
        for number in range(plan.jobs):
            height = heights()
            sent[height] = await the_node.send_job(height, PROOF_TARGET)
            await wait_received(handles, base + connected * (number + 1), plan.drain_timeout)
            await asyncio.sleep(plan.job_gap)
        busy = await server_metrics(metrics_url)
        receipts = await asyncio.gather(*(h.call("receipts") for h in handles))
    latencies = [
        (at - sent[height]) / 1e6
        for answer in receipts
        for height, times in answer.items()
        if height in sent
        for at in times
    ]
    return {
        "workers": count,
        "connected": connected,
        "connect_failures": connect["failures"],
        "connect_seconds": round(connect_seconds, 2),
        "ready_ms": summary(ready["ready_ms"], (50, 99)),
        "ready_during_connect_ms": summary(storm_ms, (50, 99)),
        "without_first_job": sum(a["without_job"] for a in storm) + ready["without_job"],
        "fanout_ms": summary(latencies),
        "delivered": len(latencies),
        "expected": connected * plan.jobs,
        "delivery_ratio": round(len(latencies) / max(1, connected * plan.jobs), 4),
        "rss_per_connection_kib": _per_connection_kib(before, idle, connected),
        "server_rss_mib": round(idle.get("rss", 0) / 2**20, 1),
        "server_cpu_seconds_per_job": round(
            (busy.get("cpu", 0) - idle.get("cpu", 0)) / max(1, plan.jobs), 3
        ),
    }


def _per_connection_kib(before: dict[str, float], after: dict[str, float], n: int) -> float | None:
    if "rss" not in before or "rss" not in after or not n:
        return None
    return round((after["rss"] - before["rss"]) / n / 1024, 1)


async def solution_phases(
    endpoints: Endpoints, plan: Plan, the_node: Node, heights: Heights
) -> dict[str, Any]:
    processes = max(1, min(plan.processes, math.ceil(plan.solution_workers / 32)))
    async with swarms(processes, endpoints.worker_url, plan.sources) as handles:
        base = received(handles)
        connect = await _connect(handles, plan.solution_workers)
        await the_node.send_job(heights(), PROOF_TARGET)
        # Each worker gets the latest job on joining, then this one: wait for both.
        await wait_received(handles, base + 2 * connect["connected"], plan.drain_timeout)
        await asyncio.sleep(1.0)
        the_node.take()
        rtt = await _solutions(handles[:1], the_node, plan.rtt_rate, plan.rtt_seconds, plan)
        # A fresh task, so the rows stored for it are the throughput run's alone.
        base = received(handles)
        await the_node.send_job(heights(), PROOF_TARGET)
        await wait_received(handles, base + connect["connected"], plan.drain_timeout)
        await asyncio.sleep(0.5)
        say(f"  throughput: {plan.rate:g}/s for {plan.duration:g} s")
        metrics = pipeline_metrics(endpoints)
        before = {name: await server_metrics(url) for name, url in metrics.items()}
        throughput = await _solutions(handles, the_node, plan.rate, plan.duration, plan)
        after = {name: await server_metrics(url) for name, url in metrics.items()}
    throughput["server_cpu_seconds"] = {
        name: round(after[name].get("cpu", 0) - before[name].get("cpu", 0), 2) for name in metrics
    }
    throughput["stored"] = await stored(plan.postgres_dsn, throughput.pop("task_id"), throughput)
    throughput["lost"] = throughput["offered"] - min(throughput["delivered"], throughput["stored"])
    rtt.pop("task_id")
    return {"round_trip": rtt, "throughput": throughput, "node_errors": the_node.errors[:5]}


async def _solutions(
    handles: list[SwarmHandle], the_node: Node, rate: float, seconds: float, plan: Plan
) -> dict[str, Any]:
    the_node.take()
    per_process = rate / len(handles)
    started = time.monotonic()
    answers = await asyncio.gather(
        *(
            h.call("solutions", per_process, seconds, plan.solution_workers, SOLUTION_TARGET)
            for h in handles
        )
    )
    send_seconds = time.monotonic() - started
    offered = sum(a["sent"] for a in answers)
    await the_node.wait_for(offered, plan.drain_timeout)
    delivered_seconds = time.monotonic() - started
    latencies = the_node.take()
    return {
        "offered": offered,
        "send_errors": sum(a["errors"] for a in answers),
        "offered_per_second": round(offered / send_seconds, 1),
        "delivered": len(latencies),
        "delivered_per_second": round(len(latencies) / delivered_seconds, 1),
        "delivery_ratio": round(len(latencies) / max(1, offered), 4),
        "latency_ms": summary(latencies),
        "task_id": answers[0]["task_id"],
    }
