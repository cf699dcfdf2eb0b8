"""Prepare Postgres, RabbitMQ and Kafka for wspool; safe to run any number of times.

    python -m shared.setup [--help]

Run once before the services start and after every upgrade (a Kubernetes Job,
the `setup` profile of docker-compose, `make run` itself). It creates the
database if missing and applies migrations, declares the durable exchanges,
work queues and dead-letter queues, and creates the Kafka topics.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import ClassVar

from pydantic import Field

from shared.catalogue import SETUP, Program
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.logs import configure_logging
from shared.rabbit import connect, declare_topology
from shared.routes import CANDIDATE, JOB, SOLUTION
from shared.runtime.cli import load_settings
from shared.settings import KAFKA_RETENTION_MS, ServiceSettings

log = logging.getLogger("setup")


class SetupSettings(ServiceSettings):
    """Settings of the setup; env prefix from `shared.catalogue`."""

    program: ClassVar[Program] = SETUP

    job_partitions: int = Field(1, ge=1, description="Partitions of topic `job`.")
    solution_partitions: int = Field(
        3, ge=1, description="Partitions of topics `solution` and `solution.candidate`."
    )
    retention_ms: int = Field(KAFKA_RETENTION_MS, ge=1000, description="Topic retention.")
    replication_factor: int = Field(1, ge=1, description="Replication of new topics.")
    timeout_seconds: float = Field(30.0, gt=0, description="Give up on a dependency after this.")


async def setup(settings: SetupSettings) -> None:
    """Database and migrations, RabbitMQ topology, Kafka topics, in that order."""
    dsn = settings.postgres_dsn.get_secret_value()
    applied = await _step("postgres", migrate(dsn), settings.timeout_seconds)
    log.info("migrations_applied", extra={"count": applied})

    async def rabbit() -> None:
        connection = await connect(settings.rabbitmq_url.get_secret_value(), settings.client_name)
        try:
            await declare_topology(await connection.channel())
        finally:
            await connection.close()

    await _step("rabbitmq", rabbit(), settings.timeout_seconds)
    log.info("rabbitmq_topology_declared")
    created = await _step(
        "kafka",
        ensure_topics(
            settings,
            {
                JOB.topic: settings.job_partitions,
                SOLUTION.topic: settings.solution_partitions,
                CANDIDATE.topic: settings.solution_partitions,
            },
            settings.retention_ms,
            settings.replication_factor,
        ),
        settings.timeout_seconds,
    )
    log.info("kafka_topics_ready", extra={"topics_created": created})


class SetupFailed(Exception):
    pass


async def _step(name: str, work, timeout: float):  # type: ignore[no-untyped-def]
    try:
        return await asyncio.wait_for(work, timeout)
    except TimeoutError:
        raise SetupFailed(f"{name}: no answer within {timeout:g} s") from None
    except Exception as error:
        raise SetupFailed(f"{name}: {type(error).__name__}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(SetupSettings, argv)
    configure_logging("setup", settings.log_level)
    try:
        asyncio.run(setup(settings))
    except SetupFailed as error:
        print(f"setup failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
