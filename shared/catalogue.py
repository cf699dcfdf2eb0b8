"""The programs wspool is made of: one entry each, read by everything that lists them.

A program's module (`python -m <module>`), role, env prefix, settings class and,
for a service, default port are written here and nowhere else: the settings
classes take their prefix and port from here, and the local stack, the
settings table, the benchmark, the tests and the deployment checks iterate
`SERVICES` or `PROGRAMS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from pydantic_settings import BaseSettings

Role = Literal["websocket", "consumer", "setup"]


@dataclass(frozen=True, slots=True)
class Program:
    module: str  # run as `python -m <module>`
    role: Role
    env_prefix: str
    # "package.module:Class", imported on demand: shared/ never imports a service.
    settings_path: str

    def settings_class(self) -> type[BaseSettings]:
        module, name = self.settings_path.split(":")
        settings_class: type[BaseSettings] = getattr(importlib.import_module(module), name)
        return settings_class


@dataclass(frozen=True, slots=True)
class Service(Program):
    """A long-running program, serving HTTP (health, metrics; websockets for some)."""

    port: int  # the default; a websocket server's public port serves websockets only
    # The default port of health, metrics and the API of a websocket server (its `port`
    # serves them for the others): never exposed to the internet.
    internal_port: int | None = None

    @property
    def http_port(self) -> int:
        """Where its health, metrics and API answer by default."""
        return self.internal_port or self.port


NODE_SERVER = Service(
    module="node_server",
    role="websocket",
    env_prefix="NODE_SERVER_",
    settings_path="node_server.settings:NodeServerSettings",
    port=8001,
    internal_port=8021,
)
WORKER_SERVER = Service(
    module="worker_server",
    role="websocket",
    env_prefix="WORKER_SERVER_",
    settings_path="worker_server.settings:WorkerServerSettings",
    port=8002,
    internal_port=8022,
)
PROCESS_JOB_WORKER = Service(
    module="process_job_worker",
    role="consumer",
    env_prefix="PROCESS_JOB_WORKER_",
    settings_path="process_job_worker.settings:ProcessJobWorkerSettings",
    port=8011,
)
PROCESS_SOLUTION_WORKER = Service(
    module="process_solution_worker",
    role="consumer",
    env_prefix="PROCESS_SOLUTION_WORKER_",
    settings_path="process_solution_worker.settings:ProcessSolutionWorkerSettings",
    port=8012,
)
# Schema, queues and topics; run once before the services (and after upgrades).
SETUP = Program(
    module="shared.setup",
    role="setup",
    env_prefix="WSPOOL_SETUP_",
    settings_path="shared.setup:SetupSettings",
)

# The four services, in the order they are started.
SERVICES: dict[str, Service] = {
    service.module: service
    for service in (NODE_SERVER, WORKER_SERVER, PROCESS_JOB_WORKER, PROCESS_SOLUTION_WORKER)
}
PROGRAMS: dict[str, Program] = {**SERVICES, SETUP.module: SETUP}
