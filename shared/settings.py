"""Settings pieces shared by the four services.

Each program defines one subclass naming its `shared.catalogue` entry in
`program`; its env prefix (`NODE_SERVER_`, ...) and default ports come from
that entry, written there once. Values come from, in order of precedence:
command-line flags, environment variables, a `.env` file in the working
directory, defaults. Defaults work against the local stack (`make run`).
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.catalogue import Program, Service
from shared.runtime.supervisor import process_index

# Where the local stack (`make run`) finds its dependencies; every tool reads these.
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/wspool"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
# Topics keep records a little longer than a node waits for solutions (20 minutes).
KAFKA_RETENTION_MS = 25 * 60 * 1000

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
FanoutMode = Literal["shared", "per_connection"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _split_tokens(value: object) -> object:
    """Accept tokens as a comma-separated string (env, CLI) or a list.

    Set but empty is refused: a deployment that meant to set tokens and
    templated an empty value must not start open.
    """
    if isinstance(value, str):
        tokens = [token.strip() for token in value.split(",") if token.strip()]
        if not tokens:
            raise ValueError("is set but empty; unset it to run without tokens")
        return tokens
    return value


def not_blank(value: SecretStr | None) -> SecretStr | None:
    """A secret that is set must not be blank (an empty template value)."""
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("is set but empty; unset it instead")
    return value


class ServiceSettings(BaseSettings):
    """Connections, logging and lifecycle: what every service needs."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        validate_default=True,
    )
    # The program these settings are of; None only in tests that build a bare one.
    program: ClassVar[Program | None] = None

    host: str = Field("0.0.0.0", description="Address the HTTP/websocket server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP/websocket server.")
    log_level: LogLevel = Field("INFO", description="Minimum level of the JSON log lines.")
    postgres_dsn: SecretStr = Field(
        SecretStr(POSTGRES_DSN),
        description="Postgres DSN (sslmode etc. as URL parameters).",
    )
    postgres_pool_size: int = Field(10, ge=1, le=200, description="Connections in the pool.")
    rabbitmq_url: SecretStr = Field(
        SecretStr(RABBITMQ_URL),
        description="RabbitMQ URL; amqps:// for TLS.",
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated Kafka bootstrap servers."
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, description="Kafka SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)."
    )
    kafka_sasl_username: str | None = Field(None, description="Kafka SASL user.")
    kafka_sasl_password: SecretStr | None = Field(None, description="Kafka SASL password.")
    kafka_ssl_cafile: FilePath | None = Field(None, description="CA bundle for Kafka TLS.")
    auto_migrate: bool = Field(
        False, description="Apply database migrations at start-up (else run the setup)."
    )
    http_idle_timeout_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="An HTTP connection that has not completed a request (or an upgrade) "
        "within this time is closed; bounds half-sent requests.",
    )
    shutdown_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Deadline for a graceful shutdown."
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="uvloop (faster socket writes) or the standard asyncio loop."
    )
    task_failure_limit: int = Field(
        5,
        ge=1,
        le=1000,
        description="Failures in a row of a background task (publisher, consumer, fan-out, "
        "liveness) after which /healthz answers 503, so the orchestrator restarts the process.",
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes serving the same ports (SO_REUSEPORT; the kernel spreads "
        "connections). Above 1, a supervisor starts them, restarts one that dies and "
        '/metrics sums them (docs/operations.md, "Several processes per service").',
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A class that names its program takes the env prefix and ports from it."""
        super().__pydantic_init_subclass__(**kwargs)
        program = cls.__dict__.get("program")
        if program is None:
            return
        cls.model_config["env_prefix"] = program.env_prefix
        if isinstance(program, Service):
            cls.model_fields["port"].default = program.port
            if program.internal_port is not None:
                cls.model_fields["internal_port"].default = program.internal_port
        cls.model_rebuild(force=True)

    @property
    def client_name(self) -> str:
        """`wspool-node-server`, `wspool-setup`, ...: how this program names itself to
        the brokers (Kafka client id, RabbitMQ connection name), for their logs and UIs."""
        if self.program is None:
            return "wspool"
        name = self.program.env_prefix.removeprefix("WSPOOL_").strip("_")
        return "wspool-" + name.lower().replace("_", "-")

    @property
    def module(self) -> str:
        """This program's module (`node_server`, ...): its role in the `instance` table."""
        return "wspool" if self.program is None else self.program.module

    @property
    def instance_name(self) -> str:
        """How this instance names itself in the `instance` table: host and port
        (and `/<index>` in each process of a service run as several)."""
        return f"{socket.gethostname()}:{self.port}{process_suffix()}"


class WebsocketServerSettings(ServiceSettings):
    """What both websocket servers (node and worker) share."""

    port: int = Field(
        8000, ge=1, le=65535, description="Port of the websocket (only), facing the clients."
    )
    internal_port: int = Field(
        8020,
        ge=1,
        le=65535,
        description="Port of health, metrics and (node_server) the API and dashboard; never "
        "expose it to the internet.",
    )
    listen_backlog: int = Field(
        4096,
        ge=1,
        le=65535,
        description="Connections the kernel queues on the public port before they are "
        "accepted (capped by net.core.somaxconn). aiohttp's 128 overflows when a fleet "
        "reconnects at once: the dropped SYNs are retried after 1, 3, 7, 15, 31 s.",
    )
    fanout_mode: FanoutMode = Field(
        "shared",
        description="shared: one Kafka consumer per process; per_connection: one per socket.",
    )
    kafka_fetch_max_wait_ms: int | None = Field(
        None,
        ge=1,
        le=10000,
        description="Longest wait of a fan-out Kafka fetch. Brokers that answer only when it "
        "ends (Tansu) add up to this to every delivery. Default: 10 in shared mode (one "
        "consumer), 200 in per_connection mode (one consumer per socket).",
    )
    max_message_bytes: int = Field(
        65536, ge=256, le=16 * 1024 * 1024, description="Largest accepted frame (else 1009)."
    )
    max_object_bytes: int = Field(
        # About ten times a real one: an Aleo solution or challenge is a few hundred bytes.
        4096,
        ge=64,
        description="Largest epoch_challenge (node) or solution (worker) object, as JSON; "
        "larger ones are invalid frames. Bounds what one message can make us store.",
    )
    max_invalid_messages: int = Field(
        20, ge=1, description="Invalid frames tolerated before closing with 1008."
    )
    heartbeat_seconds: float = Field(
        20.0, gt=0, description="Ping interval; a peer silent for twice as long is closed."
    )
    send_queue_size: int = Field(
        64, ge=1, description="Frames queued per connection before it counts as slow (1008)."
    )
    rate_limit_per_second: float = Field(
        200.0, gt=0, description="Sustained frames per second per connection (token bucket)."
    )
    rate_limit_burst: int = Field(400, ge=1, description="Token bucket size per connection.")
    auth_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer tokens; empty means the server is open.",
    )
    tls_cert_file: Path | None = Field(None, description="Certificate (PEM) to serve wss://.")
    tls_key_file: Path | None = Field(None, description="Private key (PEM) to serve wss://.")

    _split_auth_tokens = field_validator("auth_tokens", mode="before")(_split_tokens)

    @model_validator(mode="after")
    def _ports_differ(self) -> WebsocketServerSettings:
        if self.internal_port == self.port:
            raise ValueError(
                f"internal_port and port are both {self.port}: the internal port must be "
                "another one, never exposed to the internet"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_usable(self) -> WebsocketServerSettings:
        """Both TLS files or neither, and loadable: fail at start-up, not at first use."""
        cert, key = self.tls_cert_file, self.tls_key_file
        if (cert is None) != (key is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if cert is not None and key is not None:
            for name, path in (("tls_cert_file", cert), ("tls_key_file", key)):
                if not (path.is_file() and os.access(path, os.R_OK)):
                    raise ValueError(f"{name}: {path} is not a readable file")
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"TLS certificate/key unusable: {error}") from None
        return self

    @property
    def fetch_max_wait_ms(self) -> int:
        if self.kafka_fetch_max_wait_ms is not None:
            return self.kafka_fetch_max_wait_ms
        return 10 if self.fanout_mode == "shared" else 200


class ConsumerSettings(ServiceSettings):
    """What both persist-and-broadcast workers share."""

    port: int = Field(8010, ge=1, le=65535, description="Port of /healthz, /readyz, /metrics.")

    prefetch_count: int = Field(
        1000,
        ge=1,
        le=65535,
        description="Unacked AMQP messages this replica may hold (a micro-batch is one "
        "message of up to 100 items).",
    )
    batch_size: int = Field(
        500,
        ge=1,
        le=10000,
        description="Most items (jobs or solutions) stored and produced in one batch.",
    )
    max_in_flight_batches: int = Field(
        4,
        ge=1,
        le=64,
        description="Batches processed at once: while one waits on Postgres or Kafka, the "
        "next is stored. Each is acked only after it was stored and broadcast.",
    )
    retry_max_seconds: float = Field(
        10.0, gt=0, description="Longest backoff between retries of a transient failure."
    )
    kafka_partitions: int = Field(
        1, ge=1, le=1000, description="Partitions of the output topic when it must be created."
    )
    kafka_retention_ms: int = Field(
        KAFKA_RETENTION_MS, ge=1000, description="Retention of the output topic when created."
    )


def default_instance_name() -> str:
    return socket.gethostname()


def process_suffix() -> str:
    """`/<index>` in a child of a service run as several processes, else nothing:
    each child keeps its own `instance` row (and worker rows) apart from its siblings'."""
    index = process_index()
    return "" if index is None else f"/{index}"
