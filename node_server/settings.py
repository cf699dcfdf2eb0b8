from typing import Annotated, ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.catalogue import NODE_SERVER, Program
from shared.settings import MAX_HEIGHT_JUMP, MaxHeightJump, not_blank, split_names
from shared.websocket.settings import WebsocketServerSettings

LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"]


class NodeServerSettings(WebsocketServerSettings):
    """Settings of node_server; env prefix and default port from `shared.catalogue`."""

    program: ClassVar[Program] = NODE_SERVER
    solution_wait_time_seconds: float = Field(
        1200.0, gt=0, description="How long a node gets solutions for a job it sent."
    )
    max_height_jump: MaxHeightJump = MAX_HEIGHT_JUMP
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
    max_recovered_solutions: int = Field(
        1000,
        ge=1,
        description="Solutions at most, newest first, a node is sent when it (re)sends a job "
        "(recovery); they go out as fast as the node reads, never dropping it.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for the read API and dashboard; unset: they answer "
        "loopback peers only.",
    )

    admin_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_NAMES),
        description="Comma-separated names the admin API and dashboard may be reached by "
        "(the request's `Host`): a name (any port) or `name:port`; another `Host` (a "
        "DNS-rebound page's) is refused with 403. Add the name operators use when it is "
        "not this machine.",
    )
    admin_cookie_secure: bool = Field(
        False,
        description="Mark the dashboard's login cookie `Secure` (sent over HTTPS only): set "
        "it when TLS terminates in front of the internal port.",
    )

    _admin_token_not_blank = field_validator("admin_token")(not_blank)
    _split_admin_allowed_hosts = field_validator("admin_allowed_hosts", mode="before")(split_names)
