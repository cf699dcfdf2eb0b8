from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from shared.catalogue import WORKER_SERVER, Program
from shared.settings import default_instance_name, not_blank, process_suffix
from shared.websocket.settings import WebsocketServerSettings, require_frame_fits


class WorkerServerSettings(WebsocketServerSettings):
    """Settings of worker_server; env prefix and default port from `shared.catalogue`."""

    program: ClassVar[Program] = WORKER_SERVER
    max_message_bytes: int = Field(
        # A real welcome or solution is about 300 bytes; a solution object may be
        # max_object_bytes (4096). aiohttp refuses a larger frame from its header,
        # before reading it: nothing larger is ever parsed.
        8192,
        ge=256,
        le=16 * 1024 * 1024,
        description="Largest accepted frame (else 1009), refused before it is read.",
    )
    address_bytes_per_second: float = Field(
        262144.0,
        gt=0,
        description="Sustained bytes of frames per second from one remote address, all its "
        "connections together (token bucket); over it, its frames are read later (paced), "
        "nothing is closed. Sized for NAT farms of a thousand rigs.",
    )
    address_bytes_burst: int = Field(
        262144,
        ge=256,
        description="Token bucket size of address_bytes_per_second; at least max_message_bytes.",
    )
    candidates_per_minute: int = Field(
        60,
        ge=0,
        description="Solutions per minute one worker (its address and hardware_id) may send "
        "down the candidate lane; beyond it they take the share lane (stored, still "
        "delivered, later). A real prover finds few.",
    )
    candidates_per_minute_per_address: int = Field(
        600,
        ge=0,
        description="Candidate-lane solutions per minute from one remote address, all its "
        "workers together; beyond it they take the share lane.",
    )
    welcome_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a worker has to send its welcome (else 3000)."
    )
    max_connections: int = Field(
        20000, ge=1, description="Open worker connections this process accepts (else HTTP 503)."
    )
    max_connections_per_ip: int = Field(
        256,
        ge=1,
        description="Open worker connections per address block (see address_prefix_ipv4, "
        "address_prefix_ipv6; else HTTP 503).",
    )
    address_prefix_ipv4: int = Field(
        24,
        ge=8,
        le=32,
        description="Prefix length of the IPv4 block that counts as one address for "
        "connection caps, handshake rates and bans (32: each address alone).",
    )
    address_prefix_ipv6: int = Field(
        64,
        ge=16,
        le=128,
        description="Prefix length of the IPv6 block that counts as one address; one "
        "holder of a /64 could otherwise rotate past every limit.",
    )
    handshakes_per_second: float = Field(
        20.0,
        gt=0,
        description="Sustained handshakes per second per address block (token bucket); "
        "more are answered 429 with a short Retry-After.",
    )
    handshake_burst: int = Field(
        1000,
        ge=1,
        description="Token bucket size of handshakes_per_second: a farm of hundreds of "
        "rigs behind one address reconnecting at once.",
    )
    worker_token_secret: SecretStr | None = Field(
        None,
        description="Secret that proves worker identities: a worker whose handshake carries "
        "worker_token = hex HMAC-SHA256(secret, hardware_id) is that worker everywhere; "
        "without one, a ban on its hardware_id holds only for its address block.",
    )
    unknown_task_cache_seconds: float = Field(
        2.0,
        gt=0,
        description="How long a task id not found in the job table is answered unknown_task "
        "without asking again (a job stored since is found after this).",
    )
    server_instance: str = Field(
        default_factory=default_instance_name,
        description="Name recorded on worker rows; rows left open by the same name are "
        "closed at start-up. Defaults to the host name; each of several processes adds "
        "`/<index>`.",
    )
    shed_lag_ms: float = Field(
        20.0,
        ge=0,
        description="Event-loop lag past which worker_server sheds: shares are answered "
        "overloaded (not published; the worker sends them again), new handshakes 503 with "
        "Retry-After; block candidates within their budget are always taken. 0: never shed.",
    )
    max_unwritten_worker_rows: int = Field(
        40_000,
        ge=1,
        description="Worker rows and closes waiting to be written while Postgres is away; "
        "a welcome beyond that is closed 1011. Rows are written in batches, off the welcome.",
    )
    liveness_interval_seconds: float = Field(
        30.0, gt=0, description="How often worker rows get last_seen_at refreshed."
    )
    stale_after_seconds: float = Field(
        180.0, gt=0, description="Open worker rows not seen for this long are closed."
    )
    solutions_per_second: float = Field(
        100.0,
        gt=0,
        description="Sustained solutions per second per connection (token bucket); one "
        "over it is not published and answered rate_limited. A prover sends a few a minute.",
    )
    solutions_burst: int = Field(
        200, ge=1, description="Token bucket size of solutions_per_second."
    )
    max_solutions_per_task: int = Field(
        100_000,
        ge=1,
        description="Solutions accepted per worker (hardware_id) and task in this process; "
        "more are answered rate_limited.",
    )
    ban_mode: Literal["enforce", "dry_run", "off"] = Field(
        "enforce",
        description="enforce: ban workers that keep sending bad solutions, and address "
        "blocks whose frames are mostly bad; dry_run: only log would_ban and count it; off.",
    )
    ban_window_seconds: float = Field(
        60.0, gt=0, description="Time window over which good and bad solutions are counted."
    )
    ban_min_bad: int = Field(
        20, ge=1, description="Bad frames of one worker in the window before a ban is possible."
    )
    ban_address_min_bad: int = Field(
        100,
        ge=1,
        description="Bad frames (solutions, welcomes) of one address block, whichever "
        "identities sent them, in the window before a ban of the block is possible.",
    )
    ban_bad_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of bad among all frames of a worker (or an address block) in "
        "the window that bans it.",
    )
    ban_seconds: float = Field(600.0, gt=0, description="How long a ban lasts.")
    ban_ip_after_identities: int = Field(
        10,
        ge=0,
        description="Ban an address block once this many worker identities from it are "
        "banned at once (0: never for that reason); whole farms share one NAT address.",
    )
    ban_refresh_seconds: float = Field(
        5.0,
        gt=0,
        description="How often the bans stored by other instances are read from Postgres "
        "(also once at start-up, before the first handshake).",
    )

    _token_secret_not_blank = field_validator("worker_token_secret")(not_blank)

    @model_validator(mode="after")
    def _address_burst_holds_a_frame(self) -> WorkerServerSettings:
        require_frame_fits(self, "address_bytes_burst")
        return self

    @field_validator("server_instance")
    @classmethod
    def _own_per_process(cls, value: str) -> str:
        """Each process of several names its rows apart: at start-up it closes the rows
        left open under its name, which must never be a sibling's live ones."""
        return value + process_suffix()

    @property
    def instance_name(self) -> str:
        """The name on its worker rows, so the fleet view and the instances agree."""
        return self.server_instance
