from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.catalogue import PROCESS_JOB_WORKER
from shared.settings import ConsumerSettings


class ProcessJobWorkerSettings(ConsumerSettings):
    """Settings of process_job_worker; env prefix and default port from `shared.catalogue`."""

    model_config = SettingsConfigDict(env_prefix=PROCESS_JOB_WORKER.env_prefix)

    port: int = Field(
        PROCESS_JOB_WORKER.port, ge=1, le=65535, description="Port of /healthz, /readyz, /metrics."
    )
    max_in_flight_batches: int = Field(
        1,
        ge=1,
        le=64,
        description="Batches processed at once; 1 keeps jobs produced in arrival order, "
        "so workers never see a newer height overtaken by an older one's delay.",
    )
