"""Shared constants and helpers for the static checks of the deployment files.

The Dockerfile, docker-compose.yml and _etc/k8s are parsed and cross-checked
against each other, the service catalogue and the settings classes by
tests/test_compose.py, tests/test_dockerfile.py and tests/test_k8s.py; no
Docker engine, no cluster.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from shared.catalogue import PROGRAMS, SETUP
from shared.catalogue import SERVICES as CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
ETC = ROOT / "_etc"
K8S = ETC / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICE_SETTINGS = {name: service.settings_class() for name, service in CATALOGUE.items()}
SERVICES = tuple(SERVICE_SETTINGS)
SETUP_MODULE = SETUP.module
# Module run by `python -m` -> settings class, for everything the files start.
MODULE_SETTINGS = {module: program.settings_class() for module, program in PROGRAMS.items()}
BACKBONE = ("kafka", "rabbitmq", "postgres")
DOCKERFILE = ETC / "Dockerfile"


# --- helpers -------------------------------------------------------------------------


def env_prefix(settings_class: type[BaseSettings]) -> str:
    return str(settings_class.model_config["env_prefix"])


PREFIXES = {env_prefix(cls): cls for cls in MODULE_SETTINGS.values()}


def setting_names(settings_class: type[BaseSettings]) -> set[str]:
    """Every env var the class reads: PREFIX + FIELD.upper()."""
    prefix = env_prefix(settings_class)
    return {prefix + name.upper() for name in settings_class.model_fields}


def class_for_key(key: str) -> type[BaseSettings] | None:
    """The settings class whose prefix the env var name carries, if any."""
    matches = [prefix for prefix in PREFIXES if key.upper().startswith(prefix)]
    return PREFIXES[max(matches, key=len)] if matches else None


def not_settings(keys: Iterator[str] | list[str] | set[str]) -> list[str]:
    """Keys with a known prefix that name no field of that class."""
    return sorted(
        key
        for key in keys
        if (cls := class_for_key(key)) is not None and key.upper() not in setting_names(cls)
    )


def build_settings(
    settings_class: type[BaseSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> BaseSettings:
    """Construct the class from exactly these env vars (ignoring the caller's .env)."""
    prefix = env_prefix(settings_class)
    for key in list(os.environ):
        if key.upper().startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return settings_class(_env_file=None)  # type: ignore[call-arg]


def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as stream:
        return yaml.safe_load(stream)


def compose_services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """`environment` as a mapping, from either the mapping or the list form.

    A name without a value is passed through from where compose runs, and
    left out of the container when unset there: left out here (see
    `compose_passed_through`).
    """
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [item.split("=", 1) for item in raw if "=" in item]
        return {key: value for key, value in pairs}
    return {key: str(value) for key, value in raw.items() if value is not None}


def compose_passed_through(service: dict[str, Any]) -> set[str]:
    """The names of `environment` given without a value: taken from where compose runs."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return {item for item in raw if "=" not in item}
    return {key for key, value in raw.items() if value is None}


def compose_default(value: str) -> str:
    """`value` as compose interpolates it with none of its variables set: the defaults
    of `${NAME:-default}` (and empty for a bare `${NAME}`)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m[1] or "", value)


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: {"condition": "service_started"} for name in raw}
    return raw


def k8s_files() -> list[Path]:
    return sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml")])


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in k8s_files():
        with path.open() as stream:
            documents += [(path, doc) for doc in yaml.safe_load_all(stream) if doc is not None]
    return documents


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc.get("kind") == kind]


def k8s_config_data(kind: str, name: str) -> dict[str, str]:
    """Keys and values of a ConfigMap or Secret (stringData and base64 data)."""
    for doc in k8s_objects(kind):
        if doc["metadata"]["name"] == name:
            data = {key: str(value) for key, value in (doc.get("stringData") or {}).items()}
            if kind == "Secret":
                for key, value in (doc.get("data") or {}).items():
                    data[key] = base64.b64decode(value).decode()
            else:
                data.update({key: str(value) for key, value in (doc.get("data") or {}).items()})
            return data
    raise AssertionError(f"{kind} {name} is referenced but not defined in {K8S}")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def workload_module(container: dict[str, Any]) -> str:
    """The module the container runs: the image's ENTRYPOINT is `python -m`."""
    args = container.get("args") or []
    assert args, f"container {container['name']} must name its module in args"
    return args[0]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """Everything the container gets: envFrom'ed ConfigMaps/Secrets, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(k8s_config_data("ConfigMap", source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(k8s_config_data("Secret", source["secretRef"]["name"]))
    for item in container.get("env") or []:
        # A downward-API value is only known at run time; any string stands for it.
        env[item["name"]] = str(item.get("value", "from-the-downward-api"))
    return env


def workload_containers(kind: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(doc, c) for doc in k8s_objects(kind) for c in pod_spec(doc)["containers"]]


def deployments_by_module() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {workload_module(c): (doc, c) for doc, c in workload_containers("Deployment")}


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def instruction_values(path: Path, keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile_instructions(path) if name == keyword]
