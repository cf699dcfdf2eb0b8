from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.catalogue import PROCESS_SOLUTION_WORKER
from shared.settings import ConsumerSettings


class ProcessSolutionWorkerSettings(ConsumerSettings):
    """Settings of process_solution_worker; env prefix and default port from `shared.catalogue`."""

    model_config = SettingsConfigDict(env_prefix=PROCESS_SOLUTION_WORKER.env_prefix)

    port: int = Field(
        PROCESS_SOLUTION_WORKER.port,
        ge=1,
        le=65535,
        description="Port of /healthz, /readyz, /metrics.",
    )
    retention_days: int = Field(
        30,
        ge=0,
        description="Solutions, closed worker rows, ended bans and silent instances older "
        "than this many days are deleted (in small batches, hourly); 0 keeps everything.",
    )
    lanes: Literal["all", "shares", "candidates"] = Field(
        "all",
        description="Which queues this process consumes. With processes > 1 it is set per "
        "process: the first consumes block candidates only, the others shares, so "
        "candidates have a process (and CPU time) shares can't take.",
    )
