"""The live dashboard: a static page and the one JSON document it polls.

The page (static/dashboard.html) has no dependencies and no build step; it
fetches `/api/dashboard` every few seconds and redraws in place.
"""

from __future__ import annotations

import math
from pathlib import Path

from aiohttp import web
from prometheus_client import Histogram

from node_server import api_models, queries
from node_server.api import current_stats, json_response
from shared.db import POOL
from shared.metrics import LATENCY

PAGE = Path(__file__).with_name("static") / "dashboard.html"
CHART_MINUTES = 30
BUSIEST_WINDOW_SECONDS = 3600
BUSIEST_COUNT = 10
QUANTILES = (0.5, 0.9, 0.99)


async def page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})


async def data(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    return json_response(
        api_models.Dashboard(
            stats=await current_stats(request.app),
            per_minute=await queries.per_minute(pool, CHART_MINUTES),
            busiest_workers=await queries.busiest(pool, BUSIEST_WINDOW_SECONDS, BUSIEST_COUNT),
            latency=api_models.Latencies(
                job=latency(LATENCY, "job"), solution=latency(LATENCY, "solution")
            ),
        )
    )


def latency(histogram: Histogram, kind: str) -> api_models.Latency:
    """Count and estimated quantiles (seconds) of one `kind` in this process's histogram."""
    buckets = [
        (float(sample.labels["le"]), sample.value)
        for metric in histogram.collect()
        for sample in metric.samples
        if sample.name.endswith("_bucket") and sample.labels.get("kind") == kind
    ]
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    estimates = {f"p{round(q * 100)}": quantile(buckets, q) for q in QUANTILES}
    return api_models.Latency(count=int(total), **estimates)


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
