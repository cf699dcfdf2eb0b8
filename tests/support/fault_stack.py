"""The whole system on private instances, as subprocesses the fault tests may kill."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.catalogue import SERVICES
from shared.setup import SetupSettings, setup
from tests.support.instances import (
    PrivatePostgres,
    PrivateRabbit,
    PrivateTansu,
    Service,
    stopped_on_exit,
)
from tests.support.kafka_gate import KafkaGate
from tests.support.ports import free_port

SHUTDOWN_TIMEOUT_SECONDS = 5.0
# Generous limits: the tests push bursts through one connection on purpose.
SERVER_SETTINGS = {
    "RATE_LIMIT_PER_SECOND": "100000",
    "RATE_LIMIT_BURST": "100000",
    "RATE_LIMIT_BYTES_PER_SECOND": "1000000000",
    "RATE_LIMIT_BYTES_BURST": "1000000000",
    "SEND_QUEUE_SIZE": "10000",
}
# A Round streams all its solutions (candidates too) through one worker connection.
WORKER_SETTINGS = {
    "SOLUTIONS_PER_SECOND": "100000",
    "SOLUTIONS_BURST": "100000",
    "ADDRESS_BYTES_PER_SECOND": "1000000000",
    "ADDRESS_BYTES_BURST": "1000000000",
    "CANDIDATES_PER_MINUTE": "1000000",
    "CANDIDATES_PER_MINUTE_PER_ADDRESS": "1000000",
    # The accounting counts what was sent; a share shed under a loaded machine is not lost
    # but must be sent again, which a Round does not do.
    "SHED_LAG_MS": "0",
}
CONSUMER_SETTINGS = {"RETRY_MAX_SECONDS": "1"}


@dataclass
class FaultStack:
    root: Path
    postgres: PrivatePostgres
    rabbit: PrivateRabbit
    kafka: PrivateTansu
    kafka_gate: KafkaGate  # what the services connect to; Tansu advertises it
    services: dict[str, Service]

    async def all_ready(self) -> None:
        for service in self.services.values():
            await service.ready()

    async def setup(self) -> None:
        """What an operator runs after a broker lost its data: topics, queues, schema."""
        await setup(
            SetupSettings(
                postgres_dsn=self.postgres.dsn,
                rabbitmq_url=self.rabbit.url,
                kafka_bootstrap_servers=self.kafka_gate.bootstrap,
                solution_partitions=2,
            )
        )

    def logs(self) -> dict[str, str]:
        return {name: service.log_text() for name, service in self.services.items()}


def service_env(
    name: str,
    postgres_dsn: str,
    rabbitmq_url: str,
    kafka: str,
    port: int,
    internal_port: int | None = None,
    **extra: str,
) -> dict[str, str]:
    prefix = SERVICES[name].env_prefix
    settings = {
        "POSTGRES_DSN": postgres_dsn,
        "RABBITMQ_URL": rabbitmq_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **({"INTERNAL_PORT": str(internal_port)} if internal_port else {}),
        "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
        **(SERVER_SETTINGS if SERVICES[name].role == "websocket" else CONSUMER_SETTINGS),
        **(WORKER_SETTINGS if name == "worker_server" else {}),
        **extra,
    }
    return {**os.environ, **{f"{prefix}{key}": value for key, value in settings.items()}}


@contextlib.asynccontextmanager
async def fault_stack(instances: int = 1) -> AsyncIterator[FaultStack]:
    """Private Postgres, RabbitMQ and Tansu, set up, and the four services running.

    With `instances` > 1, each service runs that many times on the same brokers;
    the second node_server is `services["node_server#2"]`, and so on.
    """
    root = Path(tempfile.mkdtemp(prefix="wspool-faults-"))
    os.chmod(root, 0o755)  # the postgres user must reach its data directory
    postgres = PrivatePostgres(root / "postgres")
    rabbit = PrivateRabbit(root / "rabbitmq")
    kafka = PrivateTansu(root)
    gate = KafkaGate(kafka.port)
    kafka.advertised_port = gate.port
    services: dict[str, Service] = {}
    stack = FaultStack(root, postgres, rabbit, kafka, gate, services)
    with _removed(root), stopped_on_exit(postgres, rabbit, kafka):
        postgres.init()
        postgres.start()
        rabbit.start()
        await gate.start()
        try:
            kafka.start()
            await stack.setup()
            for name in SERVICES:
                for number in range(1, instances + 1):
                    services[instance_key(name, number)] = _service(stack, name, number)
            with stopped_on_exit(*services.values()):
                for service in services.values():
                    service.start()
                await stack.all_ready()
                try:
                    yield stack
                except BaseException:
                    _print_log_tails(stack)  # the directory is removed: keep the evidence
                    raise
        finally:
            await gate.stop()


def instance_key(name: str, number: int) -> str:
    return name if number == 1 else f"{name}#{number}"


def _service(stack: FaultStack, name: str, number: int = 1) -> Service:
    port = free_port()
    internal_port = free_port() if SERVICES[name].internal_port else None
    extra = {"SERVER_INSTANCE": f"faults-{uuid.uuid4().hex[:8]}"} if name == "worker_server" else {}
    kafka = stack.kafka_gate.bootstrap
    env = service_env(
        name, stack.postgres.dsn, stack.rabbit.url, kafka, port, internal_port, **extra
    )
    log = stack.root / f"{instance_key(name, number)}.log"
    return Service(name, env, port, log, internal_port)


def _print_log_tails(stack: FaultStack, lines: int = 40) -> None:
    for name, text in stack.logs().items():
        # aiokafka repeats its connection errors many times a second: skip them.
        ours = [line for line in text.splitlines() if '"logger":"aiokafka' not in line]
        print(f"--- last {lines} lines of {name}'s log, aiokafka's own left out ---")
        print("\n".join(ours[-lines:]))


@contextlib.contextmanager
def _removed(root: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(root, ignore_errors=True)
