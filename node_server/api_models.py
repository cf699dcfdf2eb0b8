"""The bodies node_server's HTTP API answers with, as pydantic models.

Handlers build these and respond with their JSON (`api.json_response`); the
OpenAPI document (`node_server.openapi`) is generated from their JSON
Schemas. A field added to a query without its model fails the handler (every
model forbids unknown fields), and `tests/integration/test_openapi.py`
validates real answers against the generated document.

Those of `GET /api/dashboard` are `node_server.dashboard_models`; the request
body of `POST /api/jobs` is the websocket's `shared.protocol.NodeJob`; path
and query parameters are `node_server.params`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from shared.protocol import MAX_INT64

Int64 = Annotated[int, Field(ge=0, le=MAX_INT64)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class Body(BaseModel):
    """Exactly these fields, all present (`null` where a value may be missing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Error(Body):
    """Every 4xx and 503 answer."""

    error: str = Field(description="Machine-readable code, like `invalid_parameter`.")
    detail: str


class WorkerCounts(Body):
    connected: NonNegativeInt = Field(description="Open worker connections, whole cluster.")


class NodeCounts(Body):
    connected: NonNegativeInt = Field(description="Node websockets, whole cluster.")
    connected_here: NonNegativeInt = Field(description="Node websockets of this process.")


class RecentCounts(Body):
    last_minute: NonNegativeInt
    last_hour: NonNegativeInt


class Stats(Body):
    workers: WorkerCounts
    nodes: NodeCounts
    current_height: int | None = Field(description="Highest job not retired; null without one.")
    jobs: RecentCounts
    solutions: RecentCounts


class JobRow(Body):
    task_id: uuid.UUID
    block_height: Int64
    epoch_challenge: dict[str, Any]
    created_at: datetime
    broadcast_at: datetime | None
    retired_at: datetime | None


class Job(JobRow):
    solution_count: NonNegativeInt


class Solution(Body):
    id: NonNegativeInt
    task_id: uuid.UUID
    nonce: str
    hardware_id: str
    caption: str
    solution: dict[str, Any] = Field(description="The worker's `solution` object, unchanged.")
    solution_target: Int64
    valid: bool
    checked: bool
    created_at: datetime
    broadcast_at: datetime | None


class Worker(Body):
    """One worker connection."""

    id: NonNegativeInt
    hardware_id: str
    caption: str
    address: str
    hardware: str
    ip: str
    remote_ip: str
    server_instance: str
    connected_at: datetime
    last_seen_at: datetime
    disconnected_at: datetime | None
    close_code: int | None


NEXT_BEFORE = "Pass as `before` for the next page; null on the last one."


class JobPage(Body):
    items: list[JobRow]
    next_before: int | None = Field(description=NEXT_BEFORE)


class SolutionPage(Body):
    items: list[Solution]
    next_before: int | None = Field(description=NEXT_BEFORE)


class WorkerPage(Body):
    items: list[Worker]
    next_before: int | None = Field(description=NEXT_BEFORE)


class WorkerStats(Body):
    hardware_id: str
    window_seconds: NonNegativeInt
    connections: NonNegativeInt
    connected: NonNegativeInt
    last_seen_at: datetime | None
    solutions: NonNegativeInt = Field(description="Solutions within the window.")
    solutions_total: NonNegativeInt


class Disconnect(Body):
    disconnected_at: datetime
    close_code: int | None = Field(description="Websocket close code; null: none recorded.")


class FleetWorker(Body):
    """One hardware id: its latest connection and its recent work."""

    hardware_id: str
    address: str
    caption: str
    remote_ip: str
    connected: bool = Field(description="Whether its latest connection is open.")
    connected_since: datetime | None = Field(description="When the open connection began.")
    instance: str = Field(description="server_instance of the latest connection.")
    solutions_last_hour: NonNegativeInt
    shares_per_minute: Annotated[float, Field(ge=0)] = Field(
        description="solutions_last_hour / 60, the hashrate proxy pools show."
    )
    last_solution_at: datetime | None
    recent_disconnects: list[Disconnect] = Field(description="Closed connections, newest first.")
    banned_until: datetime | None = Field(
        description="While its identity is banned (worker_server's bans), until when."
    )


class Fleet(Body):
    q: str
    items: list[FleetWorker]


class DeadLetter(Body):
    reason: str | None = Field(description="Why it was dead-lettered (x-wspool-reason).")
    body_bytes: NonNegativeInt
    body_preview: str = Field(description="The body's start, as UTF-8 (invalid bytes replaced).")


class QueueDeadLetters(Body):
    queue: Literal["job", "solution", "solution.candidate"] = Field(
        description="The name to requeue with."
    )
    work_queue: str
    ready: NonNegativeInt | None = Field(description="Ready messages; null: queue missing.")
    dead_letter_queue: str
    dead_letters: NonNegativeInt | None = Field(description="Ready dead-lettered messages.")
    peek: list[DeadLetter] = Field(description="The oldest dead letters, left in place.")


class DeadLetters(Body):
    queues: list[QueueDeadLetters]


class Requeued(Body):
    queue: Literal["job", "solution", "solution.candidate"]
    moved: NonNegativeInt = Field(description="Moved back to the work queue by this call.")
    remaining: NonNegativeInt = Field(description="Still in the dead-letter queue.")


class Accepted(Body):
    """A job RabbitMQ confirmed; poll `poll` for its solutions."""

    status: Literal["accepted"]
    block_height: Int64
    challenge_digest: Digest
    poll: str


class CurrentJob(Body):
    task_id: uuid.UUID
    block_height: Int64


class Retired(Body):
    retired: uuid.UUID
    block_height: Int64
    current: CurrentJob | None = Field(description="The job workers were moved to, if any.")


class RetiredAbove(Body):
    above_height: Int64
    retired: NonNegativeInt = Field(description="Jobs retired by this call (not before it).")
    current: CurrentJob | None = Field(description="The job workers were moved to, if any.")


class HeightSolutions(Body):
    block_height: Int64
    solutions: list[dict[str, Any]] = Field(description="`solution` objects as workers sent them.")
    next_after: NonNegativeInt = Field(description="Pass as `after` to poll for newer ones.")


class Login(Body):
    """The body of `POST /api/session`."""

    token: str


class Session(Body):
    status: Literal["logged_in", "logged_out"]
