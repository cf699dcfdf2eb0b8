from typing import ClassVar, Literal

from pydantic import Field

from shared.catalogue import PROCESS_SOLUTION_WORKER, Program
from shared.pipeline.settings import ConsumerSettings


class ProcessSolutionWorkerSettings(ConsumerSettings):
    """Settings of process_solution_worker; env prefix and default port from `shared.catalogue`."""

    program: ClassVar[Program] = PROCESS_SOLUTION_WORKER
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
