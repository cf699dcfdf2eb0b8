"""Every service instance records itself in Postgres, so one dashboard shows the cluster.

One `instance` row per (role, name): version, start, a heartbeat every
`HEARTBEAT_SECONDS`, readiness, and `stats`, what only this instance knows:
its open connections, the closes by code, its delivery-latency histogram,
its fan-out lag and the job its workers have. Readers sum the rows; one
whose heartbeat is older than `STALE_AFTER_SECONDS` is shown as stale (the
process died without saying so). A clean stop marks the row stopped.

Prometheus counters live per process: where two instances share one process
(the in-process tests), each reports the process's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import Metric

from shared.db import POOL
from shared.errors import transient
from shared.metrics import CLOSES, CURRENT_JOB_HEIGHT, CURRENT_JOB_TIMESTAMP, FANOUT_LAG, LATENCY
from shared.runtime.health import readiness
from shared.runtime.lifecycle import CleanupContext, background
from shared.runtime.loop_lag import LOOP_LAG
from shared.websocket.connection import OPEN_SOCKETS

HEARTBEAT_SECONDS = 2.0
# Generous: a busy instance's beat may come late; a dead one's never comes.
STALE_AFTER_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 2.0
# What each role measures: the closes it makes and the deliveries it times.
ROLE_LABELS = {
    "node_server": {"closes": "node", "latency": "solution", "topic": "solution"},
    "worker_server": {"closes": "worker", "latency": "job", "topic": "job"},
}
UPSERT = """
INSERT INTO instance (role, name, version, started_at, heartbeat_at, ready, stats)
VALUES ($1, $2, $3, $4, now(), $5, $6)
ON CONFLICT (role, name) DO UPDATE SET
    version = excluded.version, started_at = excluded.started_at, heartbeat_at = now(),
    stopped_at = NULL, ready = excluded.ready, stats = excluded.stats
"""
STOPPED = "UPDATE instance SET stopped_at = now(), ready = false WHERE role = $1 AND name = $2"
log = logging.getLogger(__name__)


def version() -> str:
    try:
        return importlib.metadata.version("wspool")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def heartbeat(role: str, name: str) -> CleanupContext:
    """A cleanup context: the supervised loop that keeps this instance's row fresh, then
    the row marked stopped (before the pool it needs closes)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        started_at = datetime.now(UTC)
        beating = background(f"heartbeat-{role}", lambda app: _beat(app, role, name, started_at))
        try:
            async with contextlib.asynccontextmanager(beating)(app):
                yield
        finally:
            await _mark_stopped(app, role, name)

    return context


async def _beat(app: web.Application, role: str, name: str, started_at: datetime) -> None:
    """Upsert the row every few seconds; a failed beat is logged and the next one tried.

    The database being down is an outage the other loops already report; the
    heartbeat only must not stop for it.
    """
    while True:
        try:
            ready = all((await readiness(app)).values())
            stats = instance_stats(app, role)
            await app[POOL].execute(UPSERT, role, name, version(), started_at, ready, stats)
        except Exception as error:
            # Postgres restarting ("the database system is starting up") is a
            # Postgres error, not a connection one: `transient` knows both.
            if not transient(error):
                raise
            log.warning("heartbeat_failed", extra={"role": role, "error": repr(error)})
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _mark_stopped(app: web.Application, role: str, name: str) -> None:
    try:
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
            await app[POOL].execute(STOPPED, role, name)
    except Exception as error:  # it goes stale instead
        log.warning("heartbeat_stop_failed", extra={"role": role, "error": repr(error)})


def instance_stats(app: web.Application, role: str) -> dict[str, Any]:
    stats: dict[str, Any] = {"connections": len(app.get(OPEN_SOCKETS, ()))}
    if LOOP_LAG in app:
        stats["event_loop_lag_seconds"] = app[LOOP_LAG].latest
    labels = ROLE_LABELS.get(role)
    if labels is None:
        return stats
    stats["closes"] = {
        sample.labels["code"]: sample.value
        for sample in _samples(CLOSES.collect(), "wspool_closes_total")
        if sample.labels["role"] == labels["closes"]
    }
    stats["latency_buckets"] = [
        [sample.labels["le"], sample.value]
        for sample in _samples(LATENCY.collect(), "wspool_end_to_end_latency_seconds_bucket")
        if sample.labels["kind"] == labels["latency"]
    ]
    lag = [
        sample.value
        for sample in _samples(FANOUT_LAG.collect(), "wspool_fanout_lag_records")
        if sample.labels.get("topic") == labels["topic"]
    ]
    stats["fanout_lag"] = lag[0] if lag else None
    if role == "worker_server":
        stats["current_height"] = _gauge(CURRENT_JOB_HEIGHT.collect())
        stats["current_job_at"] = _gauge(CURRENT_JOB_TIMESTAMP.collect())
    return stats


def _samples(metrics: Iterable[Metric], name: str) -> Iterable[Any]:
    return (sample for metric in metrics for sample in metric.samples if sample.name == name)


def _gauge(metrics: Iterable[Metric]) -> float | None:
    values = [sample.value for metric in metrics for sample in metric.samples]
    return values[0] if values and values[0] else None
