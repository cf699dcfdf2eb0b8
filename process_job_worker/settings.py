from typing import ClassVar

from pydantic import Field

from shared.catalogue import PROCESS_JOB_WORKER, Program
from shared.pipeline.settings import ConsumerSettings
from shared.settings import MAX_HEIGHT_JUMP, MaxHeightJump


class ProcessJobWorkerSettings(ConsumerSettings):
    """Settings of process_job_worker; env prefix and default port from `shared.catalogue`."""

    program: ClassVar[Program] = PROCESS_JOB_WORKER
    max_in_flight_batches: int = Field(
        1,
        ge=1,
        le=64,
        description="Batches processed at once; 1 keeps jobs produced in arrival order, "
        "so workers never see a newer height overtaken by an older one's delay.",
    )
    max_height_jump: MaxHeightJump = MAX_HEIGHT_JUMP
