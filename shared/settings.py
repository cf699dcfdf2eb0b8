"""Settings pieces shared by the four services.

Each program defines one subclass naming its `shared.catalogue` entry in
`program`; its env prefix (`NODE_SERVER_`, ...) and default ports come from
that entry, written there once. Values come from, in order of precedence:
command-line flags, environment variables, a `.env` file in the working
directory, defaults. Defaults work against the local stack (`make run`).
"""

from __future__ import annotations

import socket
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    FilePath,
    SecretStr,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

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
# The height guard, one figure for node_server (which refuses) and
# process_job_worker (which checks again where the job is stored).
MAX_HEIGHT_JUMP = 100_000
MaxHeightJump = Annotated[
    int,
    Field(
        ge=1,
        description="A job more than this above the newest job (not retired) would stall "
        "every worker: node_server refuses it (implausible_height, never published), "
        "process_job_worker dead-letters one that reaches it anyway. Set both alike.",
    ),
]


def split_tokens(value: object) -> object:
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


def split_names(value: object) -> object:
    """A list of names (origins, hosts, networks) as a comma-separated string (env,
    CLI) or a list, each in lower case, without a trailing slash; blank is none."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        return [str(name).strip().lower().rstrip("/") for name in value if str(name).strip()]
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


def default_instance_name() -> str:
    return socket.gethostname()


def process_suffix() -> str:
    """`/<index>` in a child of a service run as several processes, else nothing:
    each child keeps its own `instance` row (and worker rows) apart from its siblings'."""
    index = process_index()
    return "" if index is None else f"/{index}"
