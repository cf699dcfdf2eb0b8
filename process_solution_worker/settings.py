from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ConsumerSettings


class ProcessSolutionWorkerSettings(ConsumerSettings):
    """Settings of process_solution_worker (env prefix PROCESS_SOLUTION_WORKER_)."""

    model_config = SettingsConfigDict(env_prefix="PROCESS_SOLUTION_WORKER_")

    port: int = Field(8012, ge=1, le=65535, description="Port of /healthz, /readyz, /metrics.")
