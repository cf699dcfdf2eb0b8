"""Every program names itself to the brokers: Kafka client id, RabbitMQ connection name."""

from __future__ import annotations

import asyncio
import subprocess

from node_server.settings import NodeServerSettings
from process_job_worker.settings import ProcessJobWorkerSettings
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.kafka import client_options
from shared.setup import SetupSettings
from tests.support.poll import until
from tests.support.stack import Backends, StartServers
from worker_server.settings import WorkerServerSettings

SERVICES = {
    NodeServerSettings: "wspool-node-server",
    WorkerServerSettings: "wspool-worker-server",
    ProcessJobWorkerSettings: "wspool-process-job-worker",
    ProcessSolutionWorkerSettings: "wspool-process-solution-worker",
    SetupSettings: "wspool-setup",
}


def test_each_program_has_its_own_client_name() -> None:
    for settings_class, name in SERVICES.items():
        settings = settings_class()
        assert settings.client_name == name
        assert client_options(settings)["client_id"] == name


async def test_rabbitmq_shows_each_service_by_name(
    backends: Backends, start_servers: StartServers
) -> None:
    expected = {name for name in SERVICES.values() if name != "wspool-setup"}
    async with start_servers():
        names = await until(
            lambda: asyncio.to_thread(_names, backends.vhost),
            lambda names: expected <= names,
            timeout=20,
            every=0.2,
        )
    assert names <= expected | {"wspool-setup"}, f"unnamed or unexpected connections: {names}"


def _names(vhost: str) -> set[str]:
    """Connection names in `vhost`, from `rabbitmqctl list_connections`."""
    lines = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "vhost", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    names = set()
    for line in lines:
        if line.startswith(f"{vhost}\t") and '{"connection_name","' in line:
            names.add(line.split('{"connection_name","')[1].split('"')[0])
    return names
