"""Static checks of the Dockerfiles under _etc (no Docker engine needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deployment import (
    DOCKERFILES,
    ETC,
    ROOT,
    SERVICE_SETTINGS,
    SERVICES,
    dockerfile_instructions,
    instruction_values,
)

# --- Dockerfiles ---------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_runs_as_non_root(path: Path) -> None:
    instructions = dockerfile_instructions(path)
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    users = [args for name, args in instructions[last_from:] if name == "USER"]
    assert users, f"{path}: the runtime stage declares no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{path}: runs as {users[-1]}"
    assert "wspool" in path.read_text() and "10001" in user


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_is_a_slim_multi_stage_build(path: Path) -> None:
    stages = instruction_values(path, "FROM")
    assert len(stages) >= 2, f"{path}: builder and runtime stages expected"
    assert all(stage.split()[0] == "python:3.11-slim" for stage in stages), stages
    assert any("pip install ." in run for run in instruction_values(path, "RUN"))
    assert any(c.startswith("--from=") for c in instruction_values(path, "COPY"))
    assert [json.loads(e) for e in instruction_values(path, "ENTRYPOINT")] == [["python", "-m"]]


@pytest.mark.parametrize("service", SERVICES)
def test_service_dockerfile_runs_its_service(service: str) -> None:
    path = ETC / service / "Dockerfile"
    assert [json.loads(c) for c in instruction_values(path, "CMD")] == [[service]]
    assert (ROOT / service / "__main__.py").is_file()
    exposed = " ".join(instruction_values(path, "EXPOSE")).split()
    port = SERVICE_SETTINGS[service].model_fields["port"].default
    assert str(port) in exposed


def test_generic_dockerfile_defaults_to_node_server() -> None:
    path = ETC / "Dockerfile"
    assert [json.loads(c) for c in instruction_values(path, "CMD")] == [["node_server"]]
    exposed = set(" ".join(instruction_values(path, "EXPOSE")).split())
    ports = {str(cls.model_fields["port"].default) for cls in SERVICE_SETTINGS.values()}
    assert ports <= exposed


@pytest.mark.parametrize("service", SERVICES)
def test_service_dockerfiles_only_differ_in_cmd_and_expose(service: str) -> None:
    def recipe(path: Path) -> list[tuple[str, str]]:
        return [i for i in dockerfile_instructions(path) if i[0] not in ("CMD", "EXPOSE")]

    assert recipe(ETC / service / "Dockerfile") == recipe(ETC / "Dockerfile")
