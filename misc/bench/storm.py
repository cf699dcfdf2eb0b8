"""The storm and soak phases: the fleet arriving at once, and the fleet churning for long.

Storm: N workers connect at once (at most `storm_in_flight` handshakes open
over all client processes) and wait for the current job; then every
connection is aborted at the same instant, as in a network blip, and all
come back at once. Each wave reports the time until every worker holds the
current job, welcome -> job p50/p99, and the failed handshakes by kind
(refused with 503/429, broken). The clients retry as provers do
(`misc.bench.waves`).

Soak: workers visit at `soak_rate` a second for `soak_seconds` (a job, a few
shares, sometimes a candidate, then close or drop), a new job every
`JOB_SECONDS`, and each service's RSS sampled every `SAMPLE_SECONDS`:
reported at the start, after the first third and at the end.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from misc.bench.clients import Node, SwarmHandle, swarms
from misc.bench.facts import summary
from misc.bench.heights import Heights
from misc.bench.plan import Plan
from misc.bench.stack import Endpoints
from misc.bench.steps import connect_shares, pipeline_metrics, say, server_metrics

PROOF_TARGET = 100
WAVE_TIMEOUT = 120.0
SETTLE_SECONDS = 1.0
JOB_SECONDS = 2.0
SAMPLE_SECONDS = 5.0
SHARES_PER_VISIT = 3
CANDIDATE_EVERY = 20  # visits; a candidate is rare, as a block is
VISITS_PER_PROCESS = 100  # a second: what one client process keeps up with


async def storm_phase(endpoints: Endpoints, plan: Plan, count: int) -> dict[str, Any]:
    """The cold wave, then the blip and the wave after it (a current job is already sent)."""
    processes = max(1, min(plan.processes, math.ceil(count / 250)))
    in_flight = max(1, plan.storm_in_flight // processes)
    reply = WAVE_TIMEOUT + 60
    async with swarms(processes, endpoints.worker_url, plan.sources) as handles:
        shares = connect_shares(count, len(handles))
        started = time.time_ns()
        cold = await asyncio.gather(
            *(
                h.call("wave", n, in_flight, WAVE_TIMEOUT, timeout=reply)
                for h, n in zip(handles, shares, strict=True)
            )
        )
        await asyncio.sleep(SETTLE_SECONDS)
        say(f"  storm: blip of {count} workers")
        blipped = time.time_ns()
        after = await asyncio.gather(
            *(h.call("blip", in_flight, WAVE_TIMEOUT, timeout=reply) for h in handles)
        )
    return {
        "workers": count,
        "cold": wave_figures(cold, started),
        "after_blip": wave_figures(after, blipped),
    }


def wave_figures(answers: list[dict[str, Any]], started_ns: int) -> dict[str, Any]:
    held = sum(a["held_job"] for a in answers)
    without = sum(a["without_job"] for a in answers)
    last = max((a["last_job_ns"] or 0 for a in answers), default=0)
    return {
        "held_job": held,
        "without_job": without,
        "all_hold_job_seconds": round((last - started_ns) / 1e9, 2) if not without else None,
        "ready_ms": summary([ms for a in answers for ms in a["ready_ms"]], (50, 99)),
        "refused": _merged(a["refused"] for a in answers),
        "broken": _merged(a["broken"] for a in answers),
    }


def _merged(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in counts:
        for name, n in part.items():
            total[name] = total.get(name, 0) + n
    return total


async def soak_phase(
    endpoints: Endpoints, plan: Plan, the_node: Node, heights: Heights
) -> dict[str, Any]:
    seconds, rate = plan.soak_seconds, plan.soak_rate
    processes = max(1, min(plan.processes, math.ceil(rate / VISITS_PER_PROCESS)))
    metrics = pipeline_metrics(endpoints)
    samples: list[tuple[float, dict[str, float | None]]] = []
    async with swarms(processes, endpoints.worker_url, plan.sources) as handles:
        the_node.take()
        started = time.monotonic()
        background = [
            asyncio.create_task(_new_jobs(the_node, heights)),
            asyncio.create_task(_sample(metrics, samples, started)),
        ]
        try:
            answers = await _churn(handles, rate, seconds)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        samples.append((time.monotonic() - started, await _rss(metrics)))
    visits = _merged({k: v for k, v in a.items() if isinstance(v, int)} for a in answers)
    sent = visits.get("candidates", 0)
    arrived = await the_node.wait_for(sent, plan.drain_timeout)
    return {
        "seconds": seconds,
        "rate": rate,
        "visits": visits,
        "candidates_sent": sent,
        "candidates_arrived": arrived,
        "refused": _merged(a["refused"] for a in answers),
        "broken": _merged(a["broken"] for a in answers),
        "error_frames": _merged(a["error_frames"] for a in answers),
        "rss_mib": _rss_at(samples, seconds),
    }


async def _churn(handles: list[SwarmHandle], rate: float, seconds: float) -> list[dict[str, Any]]:
    per_process = rate / len(handles)
    reply = seconds + 120
    return await asyncio.gather(
        *(
            h.call("churn", per_process, seconds, SHARES_PER_VISIT, CANDIDATE_EVERY, timeout=reply)
            for h in handles
        )
    )


async def _new_jobs(the_node: Node, heights: Heights) -> None:
    while True:
        await asyncio.sleep(JOB_SECONDS)
        await the_node.send_job(heights(), PROOF_TARGET)


async def _rss(metrics: dict[str, str]) -> dict[str, float | None]:
    figures = {name: await server_metrics(url) for name, url in metrics.items()}
    return {name: f.get("rss") for name, f in figures.items()}


async def _sample(
    metrics: dict[str, str], samples: list[tuple[float, dict[str, float | None]]], started: float
) -> None:
    while True:
        samples.append((time.monotonic() - started, await _rss(metrics)))
        await asyncio.sleep(SAMPLE_SECONDS)


def _rss_at(
    samples: list[tuple[float, dict[str, float | None]]], seconds: float
) -> dict[str, dict[str, float | None]]:
    """Each service's RSS (MiB) at the start, after the first third, and at the end."""
    third = min(samples, key=lambda sample: abs(sample[0] - seconds / 3))
    points = {"start": samples[0], "third": third, "end": samples[-1]}
    services = samples[0][1]
    return {
        name: {
            point: None if rss is None else round(rss / 2**20, 1)
            for point, (_, figures) in points.items()
            for rss in [figures.get(name)]
        }
        for name in services
    }
