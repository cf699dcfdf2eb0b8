from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ConsumerSettings


class ProcessJobWorkerSettings(ConsumerSettings):
    """Settings of process_job_worker (env prefix PROCESS_JOB_WORKER_)."""

    model_config = SettingsConfigDict(env_prefix="PROCESS_JOB_WORKER_")

    port: int = Field(8011, ge=1, le=65535, description="Port of /healthz, /readyz, /metrics.")
