"""Static checks of docker-compose.yml and .dockerignore (no Docker engine needed)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.catalogue import SERVICES as CATALOGUE
from shared.setup import SetupSettings
from tests.support.deployment import (
    BACKBONE,
    COMPOSE_FILE,
    DOCKERIGNORE,
    ETC,
    SERVICE_SETTINGS,
    SERVICES,
    SETUP_MODULE,
    build_settings,
    compose_default,
    compose_environment,
    compose_passed_through,
    compose_services,
    depends_on,
    env_prefix,
    load_compose,
    not_settings,
)

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


@pytest.mark.parametrize("name", [*SERVICES, "setup"])
def test_every_program_runs_the_one_image_with_its_module_as_command(name: str) -> None:
    service = compose_services()[name]
    assert Path(service["build"]["context"]) == Path(".")
    assert Path(service["build"]["dockerfile"]) == Path("_etc") / "Dockerfile"
    assert service["image"] == "wspool:latest"
    assert service["command"] == [SETUP_MODULE if name == "setup" else name]


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
    internal = getattr(settings, "internal_port", None)
    assert f"127.0.0.1:{internal or settings.port}/readyz" in command
    assert "curl" not in command and "wget" not in command, "the slim image has neither"
    assert "python" in command
    published = {str(port).rsplit(":", 1)[-1]: str(port) for port in service.get("ports", [])}
    assert str(settings.port) in published
    if internal is not None:  # published to this host only
        assert published[str(internal)].startswith("127.0.0.1:"), published


def test_the_node_port_is_published_on_this_host_only_unless_told() -> None:
    """A node's job reaches every worker: nodes from elsewhere need tokens (issue #19)."""
    node_server = compose_services()["node_server"]
    settings = SERVICE_SETTINGS["node_server"]
    prefix = env_prefix(settings)
    node_port = next(p for p in map(str, node_server["ports"]) if p.endswith(":8001"))
    assert compose_default(node_port) == "127.0.0.1:8001:8001"
    assert node_port.startswith("${NODE_SERVER_BIND:-127.0.0.1}:"), "one variable opens it"
    # The tokens come from where compose runs, and only when set there: an empty value
    # would stop start-up (set but empty), an unset one keeps it loopback-only.
    assert f"{prefix}AUTH_TOKENS" in compose_passed_through(node_server)
    assert f"{prefix}AUTH_TOKENS" not in compose_environment(node_server)
    assert not not_settings(compose_passed_through(node_server))


def test_only_the_worker_port_is_published_to_every_interface() -> None:
    """Workers are the internet's; everything else this host's unless an operator opens it."""
    everywhere = {
        f"{name}:{port}"
        for name, service in compose_services().items()
        for port in map(str, service.get("ports", []))
        if not compose_default(port).startswith("127.0.0.1:")
    }
    assert everywhere == {"worker_server:8002:8002"}


def test_long_running_services_restart() -> None:
    for name, service in compose_services().items():
        if name != "setup":
            assert service.get("restart") in ("always", "unless-stopped", "on-failure"), name


def test_shell_healthchecks_are_well_formed() -> None:
    """CMD-SHELL tests must at least split into words (a lost quote breaks them silently)."""
    for name, service in compose_services().items():
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test and test[0] == "CMD-SHELL":
            assert shlex.split(test[1]), name


# --- .dockerignore ------------------------------------------------------------------


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    for excluded in (".venv", ".git", ".env", "artifacts", ".pytest_cache"):
        assert excluded in patterns, excluded
    assert any("__pycache__" in pattern for pattern in patterns)
    # Only the product goes into the image: no tools, no tests.
    assert {"misc", "tests"} <= patterns
    # `pip install .` in the builder needs the project itself.
    for needed in ("pyproject.toml", "README.md", "shared", *SERVICES):
        assert needed not in patterns and f"/{needed}" not in patterns, needed
    assert not any(pattern in ("*", "**", ".") for pattern in patterns)


# --- Prometheus scrape configuration ------------------------------------------------


def test_prometheus_scrapes_each_service_on_its_metrics_port() -> None:
    config = yaml.safe_load((ETC / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job.get("static_configs", [])
        for target in group["targets"]
    }
    for name, service in CATALOGUE.items():
        assert f"{name}:{service.http_port}" in targets, name
