"""Static checks of the Kubernetes manifests in _etc/k8s (no cluster needed)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.deployment import (
    K8S,
    MODULE_SETTINGS,
    SERVICE_SETTINGS,
    SERVICES,
    SETUP_MODULE,
    build_settings,
    class_for_key,
    container_env,
    deployments_by_module,
    env_prefix,
    k8s_documents,
    k8s_files,
    k8s_objects,
    not_settings,
    pod_spec,
    workload_containers,
    workload_module,
)
from worker_server.settings import WorkerServerSettings

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


def test_k8s_deployments_probe_readyz_and_healthz_on_the_internal_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module, (_, container) in deployments_by_module().items():
        settings: Any = build_settings(
            MODULE_SETTINGS[module], container_env(container), monkeypatch
        )
        ports = container.get("ports") or []
        number = {p.get("name"): p["containerPort"] for p in ports}
        readiness = container.get("readinessProbe", {}).get("httpGet", {})
        liveness = container.get("livenessProbe", {}).get("httpGet", {})
        assert readiness.get("path") == "/readyz", module
        assert liveness.get("path") == "/healthz", module
        for probe in (readiness, liveness):
            assert number.get(probe.get("port"), probe.get("port")) == http_port(settings), module


def test_k8s_deployments_listen_on_the_configured_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    for module, (_, container) in deployments_by_module().items():
        settings: Any = build_settings(
            MODULE_SETTINGS[module], container_env(container), monkeypatch
        )
        listened = [p["containerPort"] for p in container["ports"]]
        assert listened == sorted({settings.port, http_port(settings)}), module


def http_port(settings: Any) -> int:
    """Where health and metrics answer: a websocket server's internal port."""
    return getattr(settings, "internal_port", settings.port)


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
    defaults = {module: cls.model_fields for module, cls in SERVICE_SETTINGS.items()}
    expected_ports = {module: [fields["port"].default] for module, fields in defaults.items()}
    # Nodes are in-cluster and may use the REST API; workers get the websocket only.
    expected_ports["node_server"].append(defaults["node_server"]["internal_port"].default)
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
        assert [p["port"] for p in service_ports] == expected_ports[module], module
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
