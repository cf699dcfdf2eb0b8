from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.catalogue import NODE_SERVER
from shared.settings import WebsocketServerSettings


class NodeServerSettings(WebsocketServerSettings):
    """Settings of node_server; env prefix and default port from `shared.catalogue`."""

    model_config = SettingsConfigDict(env_prefix=NODE_SERVER.env_prefix)

    port: int = Field(
        NODE_SERVER.port, ge=1, le=65535, description="Port of the websocket server and API."
    )
    solution_wait_time_seconds: float = Field(
        1200.0, gt=0, description="How long a node gets solutions for a job it sent."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for the read API and dashboard; unset means open."
    )
