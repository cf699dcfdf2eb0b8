"""Settings every websocket server has: ports, limits, auth, TLS, proxies, the fan-out."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.settings import FanoutMode, ServiceSettings, split_names, split_tokens

ForwardedHeader = Literal["x-forwarded-for", "forwarded"]


def _origins_look_like_origins(origins: list[str]) -> list[str]:
    for origin in origins:
        scheme, _, host = origin.partition("://")
        if not scheme or not host or "/" in host:
            raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], no path")
    return origins


class WebsocketServerSettings(ServiceSettings):
    """What both websocket servers (node and worker) share."""

    port: int = Field(
        8000, ge=1, le=65535, description="Port of the websocket (only), facing the clients."
    )
    internal_port: int = Field(
        8020,
        ge=1,
        le=65535,
        description="Port of health, metrics and (node_server) the API and dashboard; never "
        "expose it to the internet.",
    )
    listen_backlog: int = Field(
        4096,
        ge=1,
        le=65535,
        description="Connections the kernel queues on the public port before they are "
        "accepted (capped by net.core.somaxconn). aiohttp's 128 overflows when a fleet "
        "reconnects at once: the dropped SYNs are retried after 1, 3, 7, 15, 31 s.",
    )
    fanout_mode: FanoutMode = Field(
        "shared",
        description="shared: one Kafka consumer per process; per_connection: one per socket.",
    )
    kafka_fetch_max_wait_ms: int | None = Field(
        None,
        ge=1,
        le=10000,
        description="Longest wait of a fan-out Kafka fetch. Brokers that answer only when it "
        "ends (Tansu) add up to this to every delivery. Default: 10 in shared mode (one "
        "consumer), 200 in per_connection mode (one consumer per socket).",
    )
    max_message_bytes: int = Field(
        65536, ge=256, le=16 * 1024 * 1024, description="Largest accepted frame (else 1009)."
    )
    max_object_bytes: int = Field(
        # About ten times a real one: an Aleo solution or challenge is a few hundred bytes.
        4096,
        ge=64,
        description="Largest epoch_challenge (node) or solution (worker) object, as JSON; "
        "larger ones are invalid frames. Bounds what one message can make us store.",
    )
    max_invalid_messages: int = Field(
        20, ge=1, description="Invalid frames tolerated before closing with 1008."
    )
    heartbeat_seconds: float = Field(
        20.0, gt=0, description="Ping interval; a peer silent for twice as long is closed."
    )
    send_queue_size: int = Field(
        64, ge=1, description="Frames queued per connection before it counts as slow (1008)."
    )
    rate_limit_per_second: float = Field(
        200.0, gt=0, description="Sustained frames per second per connection (token bucket)."
    )
    rate_limit_burst: int = Field(400, ge=1, description="Token bucket size per connection.")
    rate_limit_bytes_per_second: float = Field(
        65536.0,
        gt=0,
        description="Sustained bytes of frames per second per connection (token bucket; "
        "else close 1008 rate limit). A worker's frame is about 300 bytes.",
    )
    rate_limit_bytes_burst: int = Field(
        131072,
        ge=256,
        description="Token bucket size of rate_limit_bytes_per_second; at least max_message_bytes.",
    )
    auth_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated bearer tokens; empty: worker_server is open to anyone, "
        "node_server answers loopback peers only.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated web page origins (`https://pool.example`) allowed to "
        "open the websocket and, with node_server, to POST, PUT or DELETE; a request with "
        "any other `Origin` header is refused with 403 (clients that are not browsers send "
        "none). Empty: no page may (the dashboard's own page still may).",
    )
    tls_cert_file: Path | None = Field(None, description="Certificate (PEM) to serve wss://.")
    tls_key_file: Path | None = Field(None, description="Private key (PEM) to serve wss://.")
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (CIDR) of the load balancers and proxies in "
        "front of this server. Only a peer in them may name the client (forwarded_header, "
        "proxy_protocol); empty: the peer is the client. Never 0.0.0.0/0: anyone could then "
        "choose the address its caps and bans go by.",
    )
    forwarded_header: ForwardedHeader = Field(
        "x-forwarded-for",
        description="The header in which a trusted proxy names the client: x-forwarded-for "
        "or forwarded (RFC 7239). The other is ignored: a proxy that writes one passes the "
        "other on as the client sent it.",
    )
    proxy_protocol: bool = Field(
        False,
        description="Public port: each connection starts with a PROXY protocol header (v1 "
        "or v2) naming the client; connections from outside trusted_proxies or without a "
        "valid header are refused. Needs trusted_proxies; not with tls_cert_file.",
    )

    _split_auth_tokens = field_validator("auth_tokens", mode="before")(split_tokens)
    _split_allowed_origins = field_validator("allowed_origins", mode="before")(split_names)
    _allowed_origins_valid = field_validator("allowed_origins")(_origins_look_like_origins)
    _split_trusted_proxies = field_validator("trusted_proxies", mode="before")(split_names)

    @model_validator(mode="after")
    def _ports_differ(self) -> WebsocketServerSettings:
        if self.internal_port == self.port:
            raise ValueError(
                f"internal_port and port are both {self.port}: the internal port must be "
                "another one, never exposed to the internet"
            )
        return self

    @model_validator(mode="after")
    def _proxy_protocol_usable(self) -> WebsocketServerSettings:
        if self.proxy_protocol and not self.trusted_proxies:
            raise ValueError("proxy_protocol needs trusted_proxies: the balancers' networks")
        if self.proxy_protocol and self.tls_cert_file is not None:
            # The header comes before the TLS handshake; terminate TLS at the balancer.
            raise ValueError("proxy_protocol cannot be used with tls_cert_file")
        return self

    @model_validator(mode="after")
    def _tls_files_usable(self) -> WebsocketServerSettings:
        """Both TLS files or neither, and loadable: fail at start-up, not at first use."""
        cert, key = self.tls_cert_file, self.tls_key_file
        if (cert is None) != (key is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if cert is not None and key is not None:
            for name, path in (("tls_cert_file", cert), ("tls_key_file", key)):
                if not (path.is_file() and os.access(path, os.R_OK)):
                    raise ValueError(f"{name}: {path} is not a readable file")
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"TLS certificate/key unusable: {error}") from None
        return self

    @model_validator(mode="after")
    def _burst_holds_a_frame(self) -> WebsocketServerSettings:
        require_frame_fits(self, "rate_limit_bytes_burst")
        return self

    @property
    def fetch_max_wait_ms(self) -> int:
        if self.kafka_fetch_max_wait_ms is not None:
            return self.kafka_fetch_max_wait_ms
        return 10 if self.fanout_mode == "shared" else 200


def require_frame_fits(settings: WebsocketServerSettings, burst: str) -> None:
    """A byte bucket smaller than the largest frame would refuse that frame forever."""
    size = getattr(settings, burst)
    if size < settings.max_message_bytes:
        raise ValueError(
            f"{burst} ({size}) is below max_message_bytes ({settings.max_message_bytes}): "
            "the largest frame could never pass"
        )
