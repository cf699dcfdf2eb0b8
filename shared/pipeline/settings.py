"""Settings every process worker has: its queue, batches, retries, the output topic."""

from __future__ import annotations

from pydantic import Field

from shared.settings import KAFKA_RETENTION_MS, ServiceSettings


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
