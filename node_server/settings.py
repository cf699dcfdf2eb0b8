from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import WebsocketServerSettings


class NodeServerSettings(WebsocketServerSettings):
    """Settings of node_server (env prefix NODE_SERVER_)."""

    model_config = SettingsConfigDict(env_prefix="NODE_SERVER_")

    port: int = Field(8001, ge=1, le=65535, description="Port of the websocket server and API.")
    solution_wait_time_seconds: float = Field(
        1200.0, gt=0, description="How long a node gets solutions for a job it sent."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for the read API and dashboard; unset means open."
    )
