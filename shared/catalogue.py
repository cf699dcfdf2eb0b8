"""The programs wspool is made of: one entry each, read by everything that lists them.

A program's module (`python -m <module>`), role, settings class and, for a
service, default ports are written here and nowhere else; its env prefix
follows from its module. The settings classes take their prefix and port
from here, and the local stack, the
settings table, the benchmark, the tests and the deployment checks iterate
`SERVICES` or `PROGRAMS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Literal

from pydantic_settings import BaseSettings

Role = Literal["websocket", "consumer", "setup"]


@dataclass(frozen=True, slots=True)
class Program:
    module: str  # run as `python -m <module>`
    role: Role
    # The settings class, imported on demand (shared/ never imports a service):
    # `settings_name` in `<module>.settings`, unless `settings_module` names another.
    settings_name: str
    settings_module: str = ""
    prefix: str = ""  # of its environment variables; by default the module's name in capitals

    @property
    def env_prefix(self) -> str:
        return self.prefix or f"{self.module.upper()}_"

    def settings_class(self) -> type[BaseSettings]:
        module = importlib.import_module(self.settings_module or f"{self.module}.settings")
        settings_class: type[BaseSettings] = getattr(module, self.settings_name)
        return settings_class


@dataclass(frozen=True, slots=True)
class Service(Program):
    """A long-running program, serving HTTP (health, metrics; websockets for some)."""

    # The default; a websocket server's public port serves websockets only.
    port: int = field(kw_only=True)
    # The default port of health, metrics and the API of a websocket server (its `port`
    # serves them for the others): never exposed to the internet.
    internal_port: int | None = field(default=None, kw_only=True)

    @property
    def http_port(self) -> int:
        """Where its health, metrics and API answer by default."""
        return self.internal_port or self.port


NODE_SERVER = Service(
    "node_server", "websocket", "NodeServerSettings", port=8001, internal_port=8021
)
WORKER_SERVER = Service(
    "worker_server", "websocket", "WorkerServerSettings", port=8002, internal_port=8022
)
PROCESS_JOB_WORKER = Service(
    "process_job_worker", "consumer", "ProcessJobWorkerSettings", port=8011
)
PROCESS_SOLUTION_WORKER = Service(
    "process_solution_worker", "consumer", "ProcessSolutionWorkerSettings", port=8012
)
# Schema, queues and topics; run once before the services (and after upgrades).
SETUP = Program(
    "shared.setup", "setup", "SetupSettings", settings_module="shared.setup", prefix="WSPOOL_SETUP_"
)

# The four services, in the order they are started.
SERVICES: dict[str, Service] = {
    service.module: service
    for service in (NODE_SERVER, WORKER_SERVER, PROCESS_JOB_WORKER, PROCESS_SOLUTION_WORKER)
}
PROGRAMS: dict[str, Program] = {**SERVICES, SETUP.module: SETUP}
