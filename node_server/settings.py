from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from shared.catalogue import NODE_SERVER, Program
from shared.settings import WebsocketServerSettings, not_blank


class NodeServerSettings(WebsocketServerSettings):
    """Settings of node_server; env prefix and default port from `shared.catalogue`."""

    program: ClassVar[Program] = NODE_SERVER
    solution_wait_time_seconds: float = Field(
        1200.0, gt=0, description="How long a node gets solutions for a job it sent."
    )
    max_height_jump: int = Field(
        100_000,
        ge=1,
        description="A job more than this above the newest job (not retired) is refused "
        "with implausible_height and never published: one would stall every worker.",
    )
    max_expected_heights: int = Field(
        1024,
        ge=1,
        description="Block heights one node connection waits for at once; a job beyond "
        "that makes it stop waiting for its oldest (counted in a metric).",
    )
    max_jobs_per_height: int = Field(
        16,
        ge=1,
        description="Jobs (proof target, challenge) one node connection waits on at one block "
        "height; a further one makes it stop waiting on the oldest. The same job re-sent "
        "renews its wait instead.",
    )
    max_delivered_per_connection: int = Field(
        100_000,
        ge=1,
        description="Solutions one node connection remembers having received (a 16-byte key "
        "each, to send each at most once); beyond, it stops waiting for its oldest height "
        "(counted in a metric).",
    )
    recovery_window_solutions: int = Field(
        20_000,
        ge=1,
        description="Recent solutions kept in memory for recovery over all heights; beyond, "
        "the oldest height's oldest are dropped (Postgres still has them).",
    )
    recovery_window_per_height: int = Field(
        1000,
        ge=0,
        description="Recent solutions kept in memory per block height for nodes that re-send "
        "their job (shared fan-out mode); older ones, and all after a restart, come from "
        "Postgres. 0: Postgres only.",
    )
    dashboard_interval_seconds: float = Field(
        2.0,
        gt=0,
        description="How often the dashboard document is built and pushed while any dashboard "
        "is open: once per process, shared by every event stream and GET /api/dashboard.",
    )
    max_dashboard_streams: int = Field(
        16,
        ge=0,
        description="Dashboard event streams one process holds open; beyond, 503 with "
        "Retry-After (the page then polls GET /api/dashboard, the same shared document).",
    )
    dashboard_statement_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="Longest a query of the dashboard document may run (Postgres "
        "statement_timeout); the build uses one pooled connection at a time.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for the read API and dashboard; unset: they answer "
        "loopback peers only.",
    )

    _admin_token_not_blank = field_validator("admin_token")(not_blank)
