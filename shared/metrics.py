"""Prometheus metrics, defined once; every service exposes them at /metrics.

Python names say what each holds; two exported names are older than that and
kept because dashboards scrape them (docs/operations.md, "Metrics"):
`wspool_broker_errors` counts database errors too (`broker="postgres"`), and
`wspool_fanout_undecodable` is `FANOUT_UNDECODABLE`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from shared.runtime.supervisor import MULTIPROC_DIR, usage

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# Gauge modes say how the processes of one service add up (docs/operations.md,
# "Several processes per service"); a single process reads its own value whatever the mode.
OPEN_CONNECTIONS = Gauge(
    "wspool_open_connections",
    "Open websocket connections.",
    ["role"],
    multiprocess_mode="livesum",
)
ACCEPTED_CONNECTIONS = Counter(
    "wspool_accepted_connections", "Accepted websocket connections.", ["role"]
)
REFUSED_CONNECTIONS = Counter(
    "wspool_refused_connections", "Handshakes or connections refused.", ["role", "reason"]
)
PROXY_PROTOCOL_REFUSED = Counter(
    "wspool_proxy_protocol_refused",
    "Public connections refused with proxy_protocol on: untrusted_peer, invalid_header.",
    ["reason"],
)
CLOSES = Counter("wspool_closes", "Connections closed by the server, by code.", ["role", "code"])
FRAMES_IN = Counter("wspool_frames_in", "Frames received from clients.", ["role"])
FRAMES_PACED = Counter(
    "wspool_frames_paced",
    "Frames read late because their address was over its byte rate (worker_server).",
    ["role"],
)
FRAMES_OUT = Counter("wspool_frames_out", "Frames sent to clients.", ["role"])
INVALID_FRAMES = Counter("wspool_invalid_frames", "Invalid frames received.", ["role"])
DEDUP_HITS = Counter("wspool_dedup_hits", "Messages already stored (duplicates).", ["kind"])
STORED = Counter("wspool_stored", "Rows stored by persist-and-broadcast.", ["kind"])
BROADCAST = Counter("wspool_broadcast", "Records produced to Kafka.", ["kind"])
DEAD_LETTERED = Counter("wspool_dead_lettered", "Messages sent to a dead-letter queue.", ["queue"])
DEAD_LETTERS_REFUSED = Counter(
    "wspool_dead_letters_refused",
    "Dead letters RabbitMQ returned (their queue is missing) or did not confirm; the "
    "message stays unacked and is dead-lettered again after a backoff.",
    ["queue"],
)
REQUEUED = Counter(
    "wspool_requeued",
    "Dead-lettered messages an operator moved back to their work queue, by queue.",
    ["queue"],
)
DEPENDENCY_ERRORS = Counter(
    "wspool_broker_errors", "Failures of a dependency: RabbitMQ, Kafka or Postgres.", ["broker"]
)
FANOUT_UNDECODABLE = Counter(
    "wspool_fanout_undecodable", "Kafka records the fan-out could not decode.", ["topic"]
)
LATENCY = Histogram(
    "wspool_end_to_end_latency_seconds",
    "Receipt at the gateway to send to the receiving client (job: node to worker; "
    "solution: worker to node).",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
CURRENT_HEIGHT = Gauge(
    "wspool_current_block_height", "Highest block height seen.", multiprocess_mode="max"
)
CURRENT_JOB_HEIGHT = Gauge(
    "wspool_current_job_height",
    "Block height of the job this worker_server's workers are sent now.",
    # The latest change wins: a retired job can make a lower height current again.
    multiprocess_mode="livemostrecent",
)
CURRENT_JOB_TIMESTAMP = Gauge(
    "wspool_current_job_timestamp_seconds",
    "When the gateway received the current job (or the retire that made it current), Unix time.",
    multiprocess_mode="livemostrecent",
)
FANOUT_LAG = Gauge(
    "wspool_fanout_lag_records",
    "Kafka records the shared fan-out has not read yet (log end minus position), by topic.",
    ["topic"],
    # Every process reads the whole topic: the one furthest behind is the lag.
    multiprocess_mode="livemax",
)
EVENT_LOOP_LAG = Histogram(
    "wspool_event_loop_lag_seconds",
    "How much later than asked the event loop ran a timer: what every callback waited.",
    buckets=LATENCY_BUCKETS,
)
EVENT_LOOP_LAG_NOW = Gauge(
    "wspool_event_loop_lag_now_seconds",
    "The event loop's latest lag sample.",
    # The busiest process is the one to scale for.
    multiprocess_mode="livemax",
)
READY = Gauge(
    "wspool_ready",
    "1 when the readiness check's dependency answers, else 0.",
    ["check"],
    # Ready only if every live process is: one that cannot reach Postgres shows 0.
    multiprocess_mode="livemin",
)
RECOVERED = Counter(
    "wspool_recovered_solutions",
    "Solutions a node missed, sent when it (re)submitted its job, by source.",
    ["source"],
)
RECOVERY_WINDOW = Gauge(
    "wspool_recovery_window_solutions",
    "Recent solutions held in memory for recovery.",
    # Each process holds the window of the same stream: what a node can recover is one
    # window, not their sum.
    multiprocess_mode="livemax",
)
EXPECTATIONS_EVICTED = Counter(
    "wspool_node_expectations_evicted",
    "Heights a node connection stopped waiting for: it waited for too many heights, or "
    "remembered too many delivered solutions, at once.",
)
PRUNED = Counter(
    "wspool_retention_pruned", "Rows deleted by retention (retention_days), by table.", ["table"]
)
JOBS_REPLACED = Counter(
    "wspool_jobs_replaced",
    "Jobs replaced unsent in a busy worker's outbox by a newer one (never sent: outdated).",
)
PUBLISH_BATCH = Histogram(
    "wspool_publish_batch_messages",
    "Messages per AMQP publish (one confirm each), by exchange.",
    ["exchange"],
    buckets=(1, 2, 5, 10, 20, 50, 100),
)
PUBLISH_PENDING = Gauge(
    "wspool_publish_pending",
    "Messages waiting for a publish slot, by exchange.",
    ["exchange"],
    multiprocess_mode="livesum",
)
REFUSED_JOBS = Counter(
    "wspool_refused_jobs",
    "Valid jobs refused before publishing, by error code (conflicting_job, implausible_height).",
    ["code"],
)
SHED = Counter(
    "wspool_shed",
    "Work refused while the event loop lagged past shed_lag_ms: share solutions answered "
    "overloaded, handshakes answered 503.",
    ["what"],
)
SOLUTION_LANES = Counter(
    "wspool_solution_lanes",
    "Solutions published by worker_server, by lane: candidate (at or above the lowest proof "
    "target waiting at its height), share (below it), unknown (no target known: ordinary lane), "
    "over_budget (a candidate past its worker's or address's budget: ordinary lane).",
    ["lane"],
)
SOLUTIONS_LIMITED = Counter(
    "wspool_solutions_limited",
    "Solutions not published because the worker was over a limit (per_second, per_task).",
    ["limit"],
)
BANS = Counter(
    "wspool_bans",
    "Bans imposed (mode enforce) or only logged (mode dry_run), by key (identity, ip).",
    ["key", "mode"],
)
ACTIVE_BANS = Gauge(
    "wspool_active_bans",
    "Bans in force that this process knows (its own and other instances'), by key.",
    ["key"],
    # Every process reads all bans from Postgres: the best informed one counts.
    multiprocess_mode="livemax",
)

DASHBOARD_BUILDS = Counter(
    "wspool_dashboard_builds",
    "Dashboard documents built (node_server): one per interval while any dashboard is open, "
    "however many are.",
)
DASHBOARD_STREAMS = Gauge(
    "wspool_dashboard_streams",
    "Dashboard event streams open (node_server).",
    multiprocess_mode="livesum",
)


async def metrics_handler(_request: web.Request) -> web.Response:
    directory = os.environ.get(MULTIPROC_DIR)
    registry = multiprocess_registry(directory) if directory else None
    body = generate_latest(registry) if registry else generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@functools.cache
def multiprocess_registry(directory: str) -> CollectorRegistry:
    """Every process of the service added up (each gauge by its `multiprocess_mode`)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, directory)
    registry.register(SiblingProcesses(directory, os.getppid()))
    return registry


class SiblingProcesses:
    """CPU seconds and resident memory summed over the service's live processes.

    The benchmark divides them by the work done, so they must cover every
    process. The processes are those with metric files in `directory` whose
    parent is `supervisor` (a dead child's pid may since name anything else);
    a child that died takes its CPU seconds out of the sum.
    """

    def __init__(self, directory: str, supervisor: int) -> None:
        self.directory = Path(directory)
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        cpu = memory = 0.0
        for pid in {path.stem.rsplit("_", 1)[-1] for path in self.directory.glob("*.db")}:
            try:
                process = usage(pid)
            except OSError:  # ended since the files were written
                continue
            if process.parent != self.supervisor:
                continue
            cpu += process.cpu_seconds
            memory += process.resident_bytes
        yield CounterMetricFamily(
            "process_cpu_seconds", "CPU seconds of the live processes, summed.", value=cpu
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the live processes.", value=memory
        )
