"""The body of `GET /api/dashboard` (and of its event stream), as pydantic models.

What the dashboard draws: the read API's stats, the cluster summed from the
instances' heartbeats (`node_server.cluster`) and a few charts. Built and
checked like every other body (`node_server.api_models`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, NonNegativeInt

from node_server.api_models import Body, Int64, Stats

Seconds = Annotated[float, Field(ge=0)]


class MinuteCounts(Body):
    minute: datetime
    jobs: NonNegativeInt
    solutions: NonNegativeInt


class BusyWorker(Body):
    hardware_id: str
    solutions: NonNegativeInt
    last_solution_at: datetime


class Latency(Body):
    """Delivery latency, estimated from a histogram (null: no data)."""

    count: NonNegativeInt
    p50: Seconds | None
    p90: Seconds | None
    p99: Seconds | None


class Latencies(Body):
    job: Latency
    solution: Latency


class Instance(Body):
    """One running service instance, as its last heartbeat reported it."""

    role: str
    name: str
    version: str
    started_at: datetime
    heartbeat_at: datetime
    ready: bool
    stale: bool = Field(description="No heartbeat for a while: it died or hangs.")
    connections: NonNegativeInt
    fanout_lag: float | None = Field(description="Unread fan-out records (shared mode).")
    current_height: int | None = Field(description="worker_server: the job its workers have.")


class Cluster(Body):
    instances: list[Instance]
    connections: dict[str, NonNegativeInt] = Field(description="Open sockets by role, live.")
    closes: dict[str, dict[str, NonNegativeInt]] = Field(
        description="Connections closed by the server since each instance started, by role "
        "and close code."
    )
    latency: Latencies = Field(description="Delivery latency of every live instance merged.")


class CurrentJobSummary(Body):
    task_id: uuid.UUID
    block_height: Int64
    age_seconds: float
    workers_with_it: NonNegativeInt = Field(
        description="Workers connected to a worker_server whose current job it is."
    )


class ClosesInMinute(Body):
    minute: datetime
    close_code: int | None = Field(description="null: the row was closed by the stale sweep.")
    closes: NonNegativeInt


class Dashboard(Body):
    """Everything the dashboard draws."""

    stats: Stats
    cluster: Cluster
    current_job: CurrentJobSummary | None
    per_minute: list[MinuteCounts]
    worker_closes_per_minute: list[ClosesInMinute]
    busiest_workers: list[BusyWorker]
