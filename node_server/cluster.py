"""The whole cluster, read from the `instance` rows every service keeps fresh.

`shared.runtime.instances` writes them; here they are summed: connections per role,
closes by code, one delivery-latency histogram merged from every instance's
buckets, and how many workers have the current job.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from node_server import dashboard_models, queries
from shared.current_job import newest_job
from shared.runtime.instances import STALE_AFTER_SECONDS

QUANTILES = (0.5, 0.9, 0.99)
# Where each delivery is timed: a job when a worker_server sends it, a solution at node_server.
TIMED_BY = {"job": "worker_server", "solution": "node_server"}


async def cluster(pool: queries.Queryable) -> dashboard_models.Cluster:
    rows = await queries.instances(pool, STALE_AFTER_SECONDS)
    live = [row for row in rows if not row["stale"]]
    connections: Counter[str] = Counter()
    closes: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for row in live:
        connections[row["role"]] += row["stats"].get("connections", 0)
        for code, count in row["stats"].get("closes", {}).items():
            closes[row["role"]][code] += int(count)
    return dashboard_models.Cluster(
        instances=[_instance(row) for row in rows],
        connections=dict(connections),
        closes={role: dict(by_code) for role, by_code in closes.items()},
        latency=dashboard_models.Latencies(
            **{kind: merged_latency(live, role) for kind, role in TIMED_BY.items()}
        ),
    )


def _instance(row: dict[str, Any]) -> dashboard_models.Instance:
    stats = row["stats"]
    return dashboard_models.Instance(
        role=row["role"],
        name=row["name"],
        version=row["version"],
        started_at=row["started_at"],
        heartbeat_at=row["heartbeat_at"],
        ready=row["ready"],
        stale=row["stale"],
        connections=stats.get("connections", 0),
        fanout_lag=stats.get("fanout_lag"),
        current_height=_height(stats.get("current_height")),
    )


def _height(value: float | None) -> int | None:
    return None if value is None else int(value)


async def current_job(
    pool: queries.Queryable, instances: list[dashboard_models.Instance]
) -> dashboard_models.CurrentJobSummary | None:
    job, as_of = await newest_job(pool)
    if job is None:
        return None
    have_it = sum(
        i.connections
        for i in instances
        if i.role == "worker_server" and not i.stale and i.current_height == job.block_height
    )
    return dashboard_models.CurrentJobSummary(
        task_id=job.task_id,
        block_height=job.block_height,
        age_seconds=as_of / 1e9 - job.created_at,  # both Postgres's clock
        workers_with_it=have_it,
    )


def merged_latency(rows: list[dict[str, Any]], role: str) -> dashboard_models.Latency:
    """Every `role` instance's histogram added up, and quantiles estimated from the sum."""
    totals: Counter[float] = Counter()
    for row in rows:
        if row["role"] == role:
            for bound, count in row["stats"].get("latency_buckets", []):
                totals[float(bound)] += count
    buckets = sorted(totals.items())
    total = buckets[-1][1] if buckets else 0.0
    estimates = {f"p{round(q * 100)}": quantile(buckets, q) for q in QUANTILES}
    return dashboard_models.Latency(count=int(total), **estimates)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Linear interpolation inside the bucket holding the q-th observation (like
    Prometheus' histogram_quantile); None without observations."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the largest finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound
