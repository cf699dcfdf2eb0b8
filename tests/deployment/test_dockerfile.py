"""Static checks of _etc/Dockerfile, the one image of every program (no Docker engine needed)."""

from __future__ import annotations

import json

from shared.catalogue import SERVICES
from tests.support.deployment import DOCKERFILE, dockerfile_instructions, instruction_values


def test_dockerfile_runs_as_non_root() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    users = [args for name, args in instructions[last_from:] if name == "USER"]
    assert users, "the runtime stage declares no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"runs as {users[-1]}"
    assert "wspool" in DOCKERFILE.read_text() and "10001" in user


def test_dockerfile_is_a_slim_multi_stage_build() -> None:
    stages = instruction_values(DOCKERFILE, "FROM")
    assert len(stages) >= 2, "builder and runtime stages expected"
    assert all(stage.split()[0] == "python:3.11-slim" for stage in stages), stages
    assert any("pip install ." in run for run in instruction_values(DOCKERFILE, "RUN"))
    assert any(c.startswith("--from=") for c in instruction_values(DOCKERFILE, "COPY"))


def test_the_module_to_run_is_the_command() -> None:
    entrypoints = [json.loads(e) for e in instruction_values(DOCKERFILE, "ENTRYPOINT")]
    assert entrypoints == [["python", "-m"]]
    assert [json.loads(c) for c in instruction_values(DOCKERFILE, "CMD")] == [["node_server"]]


def test_every_service_port_is_exposed() -> None:
    exposed = set(" ".join(instruction_values(DOCKERFILE, "EXPOSE")).split())
    ports = {service.port for service in SERVICES.values()}
    ports |= {service.http_port for service in SERVICES.values()}
    assert {str(port) for port in ports} <= exposed
