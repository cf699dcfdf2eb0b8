"""Static checks of the deployment files: Dockerfiles, docker-compose.yml, _etc/k8s.

No Docker engine and no cluster: the files are parsed and cross-checked against
each other and against the settings classes, so a renamed setting, a missing
Dockerfile or a probe on the wrong path fails here instead of at deploy time.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from misc.setup_local_environment import SetupSettings
from node_server.settings import NodeServerSettings
from process_job_worker.settings import ProcessJobWorkerSettings
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from worker_server.settings import WorkerServerSettings

ROOT = Path(__file__).resolve().parent.parent
ETC = ROOT / "_etc"
K8S = ETC / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {
    "node_server": NodeServerSettings,
    "worker_server": WorkerServerSettings,
    "process_job_worker": ProcessJobWorkerSettings,
    "process_solution_worker": ProcessSolutionWorkerSettings,
}
SERVICES = tuple(SERVICE_SETTINGS)
SETUP_MODULE = "misc.setup_local_environment"
# Module run by `python -m` -> settings class, for everything the files start.
MODULE_SETTINGS: dict[str, type[BaseSettings]] = {
    **SERVICE_SETTINGS,
    SETUP_MODULE: SetupSettings,
}
BACKBONE = ("kafka", "rabbitmq", "postgres")
DOCKERFILES = [ETC / "Dockerfile", *(ETC / service / "Dockerfile" for service in SERVICES)]


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
    """`environment` as a mapping, from either the mapping or the list form."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in raw)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


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


# --- docker-compose.yml --------------------------------------------------------------


def test_compose_file_parses() -> None:
    compose = load_compose()
    assert isinstance(compose, dict)
    assert isinstance(compose.get("services"), dict) and compose["services"]


def test_compose_has_the_profiles() -> None:
    profiles = {p for service in compose_services().values() for p in service.get("profiles", [])}
    missing = {"environment", "all", "setup", *SERVICES} - profiles
    assert not missing, f"profiles missing from docker-compose.yml: {sorted(missing)}"


def test_profile_all_holds_every_service() -> None:
    left_out = [
        name for name, s in compose_services().items() if "all" not in s.get("profiles", [])
    ]
    assert not left_out


def test_profile_environment_is_the_backbone() -> None:
    services = compose_services()
    in_environment = {n for n, s in services.items() if "environment" in s.get("profiles", [])}
    assert in_environment == set(BACKBONE)
    assert services["kafka"]["image"] == "apache/kafka:3.9.0"
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert services["postgres"]["image"] == "postgres:16"
    kafka_env = compose_environment(services["kafka"])
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"], "Kafka must run in KRaft mode"
    postgres_env = compose_environment(services["postgres"])
    assert postgres_env.get("POSTGRES_HOST_AUTH_METHOD") == "trust" or postgres_env.get(
        "POSTGRES_PASSWORD"
    )


@pytest.mark.parametrize("name", [*SERVICES, "setup"])
def test_each_service_has_its_own_profile(name: str) -> None:
    assert name in compose_services()[name].get("profiles", [])


def test_profiles_hold_their_dependencies() -> None:
    """Compose refuses to start a service whose dependency's profile is not active."""
    services = compose_services()
    problems = []
    for name, service in services.items():
        for dependency in depends_on(service):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            needed = set(service.get("profiles", []))
            offered = services[dependency].get("profiles")
            if offered is not None and not needed <= set(offered):
                problems.append(f"{name} -> {dependency}: {sorted(needed - set(offered))}")
    assert not problems, f"dependencies missing from profiles: {problems}"


@pytest.mark.parametrize("name", SERVICES)
def test_services_wait_for_backbone_and_setup(name: str) -> None:
    dependencies = depends_on(compose_services()[name])
    assert dependencies.get("setup", {}).get("condition") == "service_completed_successfully"
    for backbone in BACKBONE:
        assert dependencies.get(backbone, {}).get("condition") == "service_healthy", backbone


def test_healthy_conditions_have_healthchecks() -> None:
    services = compose_services()
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            if condition.get("condition") == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), (
                    f"{name} waits for {dependency} to be healthy, which has no healthcheck"
                )


def test_build_dockerfiles_exist() -> None:
    built = 0
    for name, service in compose_services().items():
        build = service.get("build")
        if build is None:
            continue
        built += 1
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    assert built >= len(SERVICES) + 1


@pytest.mark.parametrize("name", SERVICES)
def test_services_build_from_their_own_dockerfile(name: str) -> None:
    build = compose_services()[name]["build"]
    assert Path(build["context"]) == Path(".")
    assert Path(build["dockerfile"]) == Path("_etc") / name / "Dockerfile"


@pytest.mark.parametrize("name", sorted(["setup", *BACKBONE, *SERVICES]))
def test_compose_environment_names_real_settings(name: str) -> None:
    environment = compose_environment(compose_services()[name])
    assert not not_settings(environment), f"{name}: {not_settings(environment)}"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_environment_is_valid_for_the_service(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = SERVICE_SETTINGS[name]
    environment = compose_environment(compose_services()[name])
    foreign = [key for key in environment if not key.startswith(env_prefix(settings_class))]
    assert not foreign, f"{name} gets another service's settings: {foreign}"
    settings: Any = build_settings(settings_class, environment, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert urlsplit(settings.postgres_dsn.get_secret_value()).hostname == "postgres"
    assert urlsplit(settings.rabbitmq_url.get_secret_value()).hostname == "rabbitmq"


def test_compose_setup_service(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = compose_services()["setup"]
    assert setup.get("command") == [SETUP_MODULE]
    assert setup.get("restart") in ("no", False, None)
    settings: Any = build_settings(SetupSettings, compose_environment(setup), monkeypatch)
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert urlsplit(settings.postgres_dsn.get_secret_value()).hostname == "postgres"
    assert urlsplit(settings.rabbitmq_url.get_secret_value()).hostname == "rabbitmq"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_healthcheck_probes_readyz(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose_services()[name]
    settings: Any = build_settings(
        SERVICE_SETTINGS[name], compose_environment(service), monkeypatch
    )
    test = service["healthcheck"]["test"]
    command = " ".join(test) if isinstance(test, list) else test
    assert f"127.0.0.1:{settings.port}/readyz" in command
    assert "curl" not in command and "wget" not in command, "the slim image has neither"
    assert "python" in command
    published = [str(port).rsplit(":", 1)[-1] for port in service.get("ports", [])]
    assert str(settings.port) in published


def test_long_running_services_restart() -> None:
    for name, service in compose_services().items():
        if name != "setup":
            assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name


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


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    for excluded in (".venv", ".git", ".env", "artifacts", ".pytest_cache"):
        assert excluded in patterns, excluded
    assert any("__pycache__" in pattern for pattern in patterns)
    # `pip install .` in the builder needs the project itself.
    for needed in ("pyproject.toml", "README.md", "shared", "misc", *SERVICES):
        assert needed not in patterns and f"/{needed}" not in patterns, needed
    assert not any(pattern in ("*", "**", ".") for pattern in patterns)


# --- Kubernetes ----------------------------------------------------------------------


def test_k8s_manifests_parse() -> None:
    files = k8s_files()
    assert files, f"no manifests in {K8S}"
    for path in files:
        with path.open() as stream:
            documents = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
        assert documents, f"{path} is empty"
        for doc in documents:
            assert isinstance(doc, dict), path
            assert doc.get("apiVersion") and doc.get("kind"), f"{path}: {doc}"
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), f"{path}: unnamed {doc['kind']}"
                assert "namespace" not in doc["metadata"], f"{path}: manifests are namespace-less"


def test_k8s_has_the_expected_objects() -> None:
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert {"ConfigMap", "Secret", "Job", "Deployment", "Service", "PodDisruptionBudget"} <= kinds
    assert set(deployments_by_module()) == set(SERVICES)


def test_k8s_config_keys_are_real_settings() -> None:
    keys = [
        key
        for kind in ("ConfigMap", "Secret")
        for doc in k8s_objects(kind)
        for field in ("data", "stringData")
        for key in (doc.get(field) or {})
    ]
    assert keys
    unknown_prefix = sorted(key for key in keys if class_for_key(key) is None)
    assert not unknown_prefix, f"keys that are no wspool setting: {unknown_prefix}"
    assert not not_settings(keys)


def test_k8s_container_env_names_are_real_settings() -> None:
    for kind in ("Deployment", "Job"):
        for _, container in workload_containers(kind):
            names = [item["name"] for item in container.get("env") or []]
            assert not not_settings(names), f"{container['name']}: {not_settings(names)}"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_k8s_workloads_get_valid_settings(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each container receives builds its settings class, and only that one."""
    for _, container in workload_containers(kind):
        settings_class = MODULE_SETTINGS[workload_module(container)]
        env = container_env(container)
        foreign = [key for key in env if class_for_key(key) not in (None, settings_class)]
        assert not foreign, f"{container['name']} gets other services' settings: {foreign}"
        with monkeypatch.context() as patch:
            build_settings(settings_class, env, patch)


def test_k8s_deployments_probe_readyz_and_healthz() -> None:
    for module, (_, container) in deployments_by_module().items():
        ports = container.get("ports") or []
        known = {p.get("name") for p in ports} | {p["containerPort"] for p in ports}
        readiness = container.get("readinessProbe", {}).get("httpGet", {})
        liveness = container.get("livenessProbe", {}).get("httpGet", {})
        assert readiness.get("path") == "/readyz", module
        assert liveness.get("path") == "/healthz", module
        assert readiness.get("port") in known and liveness.get("port") in known, module


def test_k8s_deployments_listen_on_the_configured_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, (_, container) in deployments_by_module().items():
        settings: Any = build_settings(
            MODULE_SETTINGS[module], container_env(container), monkeypatch
        )
        assert [p["containerPort"] for p in container["ports"]] == [settings.port], module


def test_k8s_grace_period_covers_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, (deployment, container) in deployments_by_module().items():
        settings: Any = build_settings(
            MODULE_SETTINGS[module], container_env(container), monkeypatch
        )
        command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        pre_stop = float(command[1]) if command and command[0] == "sleep" else 0.0
        grace = pod_spec(deployment).get("terminationGracePeriodSeconds", 30)
        assert grace > pre_stop + settings.shutdown_timeout_seconds, module


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_k8s_workloads_are_non_root_with_resources(kind: str) -> None:
    for workload, container in workload_containers(kind):
        pod_context = pod_spec(workload).get("securityContext", {})
        context = {**pod_context, **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, container["name"]
        assert context.get("runAsUser", 10001) != 0, container["name"]
        assert context.get("allowPrivilegeEscalation") is False, container["name"]
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(section, {})), container["name"]


def test_k8s_services_select_deployments() -> None:
    expected_ports = {
        module: cls.model_fields["port"].default for module, cls in SERVICE_SETTINGS.items()
    }
    services = k8s_objects("Service")
    for module, (deployment, container) in deployments_by_module().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), module
        matching = [s for s in services if s["spec"]["selector"].items() <= labels.items()]
        assert len(matching) == 1, f"{module}: {len(matching)} Services select it"
        port_names = {p.get("name") for p in container["ports"]}
        port_numbers = {p["containerPort"] for p in container["ports"]}
        service_ports = matching[0]["spec"]["ports"]
        assert [p["port"] for p in service_ports] == [expected_ports[module]], module
        for port in service_ports:
            assert port.get("targetPort", port["port"]) in port_names | port_numbers, module


@pytest.mark.parametrize("module", ["node_server", "worker_server"])
def test_k8s_websocket_servers_have_disruption_budgets(module: str) -> None:
    deployment, _ = deployments_by_module()[module]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in k8s_objects("PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(budgets) == 1
    assert "minAvailable" in budgets[0]["spec"] or "maxUnavailable" in budgets[0]["spec"]
    assert deployment["spec"]["replicas"] >= 2


def test_k8s_worker_server_instance_is_the_pod_name() -> None:
    _, container = deployments_by_module()["worker_server"]
    env = {item["name"]: item for item in container.get("env") or []}
    item = env[env_prefix(WorkerServerSettings) + "SERVER_INSTANCE"]
    assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_k8s_setup_job() -> None:
    jobs = k8s_objects("Job")
    assert len(jobs) == 1
    spec = pod_spec(jobs[0])
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    assert [workload_module(c) for c in spec["containers"]] == [SETUP_MODULE]


def test_k8s_workloads_use_one_image() -> None:
    images = {c["image"] for kind in ("Deployment", "Job") for _, c in workload_containers(kind)}
    assert len(images) == 1, images


def test_k8s_kustomization_lists_every_manifest() -> None:
    path = K8S / "kustomization.yaml"
    if not path.exists():
        pytest.skip("no kustomization")
    resources = set(yaml.safe_load(path.read_text())["resources"])
    assert resources == {p.name for p in k8s_files() if p != path}


def test_k8s_manifests_do_not_bake_in_real_secrets() -> None:
    for secret in k8s_objects("Secret"):
        for key, value in (secret.get("stringData") or {}).items():
            if re.search(r"(DSN|URL)$", key) and "@" in value:
                password = urlsplit(value).password
                assert password in (None, "REPLACE_ME"), f"{secret['metadata']['name']}: {key}"


def test_shell_healthchecks_are_well_formed() -> None:
    """CMD-SHELL tests must at least split into words (a lost quote breaks them silently)."""
    for name, service in compose_services().items():
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test and test[0] == "CMD-SHELL":
            assert shlex.split(test[1]), name
