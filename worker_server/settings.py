from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.catalogue import WORKER_SERVER
from shared.settings import WebsocketServerSettings, default_instance_name


class WorkerServerSettings(WebsocketServerSettings):
    """Settings of worker_server; env prefix and default port from `shared.catalogue`."""

    model_config = SettingsConfigDict(env_prefix=WORKER_SERVER.env_prefix)

    port: int = Field(
        WORKER_SERVER.port, ge=1, le=65535, description="Port of the worker websocket (only)."
    )
    internal_port: int = Field(
        WORKER_SERVER.internal_port,
        ge=1,
        le=65535,
        description="Port of health and metrics; never expose it to the internet.",
    )
    welcome_timeout_seconds: float = Field(
        10.0, gt=0, description="Time a worker has to send its welcome (else 3000)."
    )
    max_connections: int = Field(
        20000, ge=1, description="Open worker connections this process accepts (else HTTP 503)."
    )
    max_connections_per_ip: int = Field(
        256, ge=1, description="Open worker connections per remote IP (else HTTP 503)."
    )
    server_instance: str = Field(
        default_factory=default_instance_name,
        description="Name recorded on worker rows; rows left open by the same name are "
        "closed at start-up. Defaults to the host name.",
    )
    liveness_interval_seconds: float = Field(
        30.0, gt=0, description="How often worker rows get last_seen_at refreshed."
    )
    stale_after_seconds: float = Field(
        180.0, gt=0, description="Open worker rows not seen for this long are closed."
    )
