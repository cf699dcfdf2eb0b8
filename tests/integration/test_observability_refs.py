"""The Grafana dashboard and the alert rules use only metrics and labels the services export.

The stack is started and driven (jobs, solutions, a duplicate, an invalid
frame, a conflicting job, a refused and a closed connection), /metrics of all
four services is scraped, and every metric and label name in the dashboard's
PromQL (targets and variables) and in the alert rules (expressions and
`$labels` in annotations) must be among what they export. In-process the
services share one prometheus registry, so each scrape shows the union; what
is checked is that some service exports the name. Names from outside wspool
are allowed only through `NOT_OURS`, each with its reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import clients
from tests.support.poll import until
from tests.support.promql import (
    label_values_query,
    references,
    template_labels,
    unknown_names,
)
from tests.support.stack import Processors, Stack

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "_etc" / "grafana" / "wspool.json"
ALERTS = ROOT / "_etc" / "prometheus" / "alerts.yml"
RUNBOOKS = ROOT / "docs" / "operations.md"

# Names no wspool service exports: their labels, and why the dashboard or an alert may use them.
NOT_OURS: dict[str, tuple[set[str], str]] = {
    "up": ({"job", "instance"}, "Prometheus' own series, one per scrape target"),
    "rabbitmq_queue_messages_ready": (
        {"vhost", "queue"},
        "RabbitMQ's rabbitmq_prometheus plugin, /metrics/per-object",
    ),
    "rabbitmq_queue_messages_unacked": (
        {"vhost", "queue"},
        "RabbitMQ's rabbitmq_prometheus plugin, /metrics/per-object",
    ),
    "rabbitmq_queue_messages": (
        {"vhost", "queue"},
        "RabbitMQ's rabbitmq_prometheus plugin, /metrics/per-object",
    ),
}
Expression = tuple[str, str, set[str]]  # where, PromQL, extra label names it relies on


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for panel in panels for p in [panel, *_panels(panel.get("panels", []))]]


def dashboard_expressions() -> list[Expression]:
    board = dashboard()
    found: list[Expression] = []
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            found.append((f"dashboard panel {panel['title']!r}", target["expr"], set()))
    for variable in board["templating"]["list"]:
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        selector, label = label_values_query(query) or (query, None)
        found.append((f"dashboard variable {variable['name']}", selector, {label} - {None}))
    return found


def alert_expressions() -> list[Expression]:
    return [
        (
            f"alert {rule['alert']}",
            rule["expr"],
            set().union(
                *(template_labels(text) for text in [*rule["annotations"].values()]),
                *(template_labels(text) for text in rule.get("labels", {}).values()),
            ),
        )
        for rule in alert_rules()
    ]


def exported_names(exposition: str) -> dict[str, set[str]]:
    """Each sample name in a Prometheus text exposition, with its label names."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def problems(expressions: list[Expression], exported: dict[str, set[str]]) -> list[str]:
    known = {**exported, **{name: labels for name, (labels, _why) in NOT_OURS.items()}}
    return [
        problem
        for where, expr, extra in expressions
        for problem in unknown_names(where, references(expr), known, extra)
    ]


# --- the files themselves -------------------------------------------------------------


def test_the_dashboard_imports_as_is() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 38
    assert board["uid"] == "wspool" and board.get("id") is None
    [source] = board["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert {"job", "instance"} <= variables
    panels = [panel for panel in _panels(board["panels"]) if panel["type"] != "row"]
    assert len({panel["id"] for panel in _panels(board["panels"])}) == len(_panels(board["panels"]))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert target["expr"].strip()


def test_alert_rules_have_the_rule_file_shape_and_a_runbook_each() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    headings = set(re.findall(r"^### (\w+)$", RUNBOOKS.read_text(), re.MULTILINE))
    names = []
    for group in document["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"(\d+[smhd])+", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
            assert rule["alert"] in headings, f"{RUNBOOKS.name} has no runbook for {rule['alert']}"
            names.append(rule["alert"])
    assert len(names) == len(set(names))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    for command in (["check", "rules", str(ALERTS)], ["check", "config", "prometheus.yml"]):
        result = subprocess.run(
            ["promtool", *command], cwd=ALERTS.parent, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_name_is_reported() -> None:
    """The control: the check finds misspelt metrics and labels, and passes good ones."""
    exported = exported_names(
        "# TYPE wspool_frames_in counter\n"
        'wspool_frames_in_total{role="worker"} 3\n'
        "# TYPE wspool_lat histogram\n"
        'wspool_lat_bucket{kind="job",le="+Inf"} 1\n'
        'wspool_lat_count{kind="job"} 1\n'
        'wspool_lat_sum{kind="job"} 0.1\n'
    )
    good = 'histogram_quantile(0.9, sum by (le, kind) (rate(wspool_lat_bucket{job=~"$job"}[5m])))'
    assert problems([("good", good, {"kind"})], exported) == []
    wrong = (
        'sum by (rol) (rate(wspool_frames_in_totl{role="worker"}[5m]))'
        ' / sum(rate(wspool_frames_in_total{kind="job"}[$__rate_interval]))'
    )
    assert problems([("wrong", wrong, {"nope"})], exported) == [
        "wrong: unknown metric wspool_frames_in_totl",
        "wrong: unknown label kind of wspool_frames_in_total",
        "wrong: unknown label nope (no metric of the expression has it)",
        "wrong: unknown label rol (no metric of the expression has it)",
    ]
    # a family name is not what Prometheus stores: the sample name is
    assert problems([("family", "rate(wspool_frames_in[5m])", set())], exported) == [
        "family: unknown metric wspool_frames_in"
    ]


# --- against the running stack --------------------------------------------------------


async def test_every_name_the_dashboard_and_alerts_use_is_exported(
    start_servers, processors: Processors
) -> None:
    expressions = dashboard_expressions() + alert_expressions()
    async with start_servers(worker={"max_connections_per_ip": 2}) as stack:
        await _traffic(stack)
        bases = [stack.node_http, stack.worker_http, processors.job_http, processors.solution_http]
        # Counters of the process workers move after the websocket traffic (a
        # duplicate is found when the batch is stored): wait for them.

        async def missing() -> list[str]:
            return problems(expressions, await _exported(bases))

        await until(missing, lambda found: not found, timeout=20)
        exported = await _exported(bases)
    assert problems(expressions, exported) == []
    # The control, on the real exposition: a misspelt name would be caught.
    assert problems(
        [("control", 'sum by (rol) (wspool_open_connection{role="x"})', set())], exported
    ) == [
        "control: unknown metric wspool_open_connection",
        "control: unknown label rol (no metric of the expression has it)",
    ]


async def _exported(bases: list[str]) -> dict[str, set[str]]:
    """The union of every service's exposition: metric names and their labels."""
    exported: dict[str, set[str]] = {}
    async with aiohttp.ClientSession() as session:
        for base in bases:
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 200, base
                for name, labels in exported_names(await response.text()).items():
                    exported.setdefault(name, set()).update(labels)
    return exported


async def _traffic(stack: Stack) -> None:
    body = clients.solution_body()
    async with clients.worker_and_nodes(stack, 2) as (worker, [node, forked_node]):
        height, task_id = await clients.every_kind_of_frame(node, worker, body)
        await worker.send(clients.solution(task_id, target=500, body=body))  # a duplicate
        fork = clients.job(
            height, epoch_challenge={"epoch_number": height, "epoch_block_hash": "fork"}
        )
        await forked_node.send(fork)
        assert (await forked_node.receive())["code"] == "conflicting_job"
        async with clients.connect(
            stack.worker_url
        ) as second:  # the last one this address may open
            with pytest.raises(aiohttp.WSServerHandshakeError):  # refused with 503
                async with clients.connect(stack.worker_url):
                    pass
            await clients.Worker(second).send(b"[]")  # not a welcome: closed 3000
            assert (await clients.Worker(second).closed())[0] == 3000
