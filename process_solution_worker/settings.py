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
