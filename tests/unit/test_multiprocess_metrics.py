"""How the metrics of a service's processes add up (shared.metrics in multiprocess mode)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from shared import metrics
from shared.metrics import SiblingProcesses
from shared.runtime.supervisor import MULTIPROC_DIR

# Run in a fresh interpreter per process, as the supervisor's children are: each
# sets what a busy child would and stays alive until told to go on.
CHILD = """
import sys
from shared.metrics import CURRENT_HEIGHT, OPEN_CONNECTIONS, READY
connections, height, ready = (int(value) for value in sys.argv[1:])
for _ in range(connections):
    OPEN_CONNECTIONS.labels(role="worker").inc()
CURRENT_HEIGHT.set(height)
READY.labels(check="postgres").set(ready)
print("set", flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def child(directory: Path, *values: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, *map(str, values)],
        env={**os.environ, MULTIPROC_DIR: str(directory)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "set\n"
        yield process
    finally:
        process.kill()
        process.wait()


def value(directory: Path, name: str, labels: dict[str, str] | None = None) -> float | None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))
    return registry.get_sample_value(name, labels or {})


def test_every_gauge_says_how_its_processes_add_up() -> None:
    gauges = [g for g in vars(metrics).values() if isinstance(g, Gauge)]
    assert len(gauges) >= 9
    # "all" (the default) would export one series per pid instead of one figure.
    assert [g._name for g in gauges if g._multiprocess_mode == "all"] == []


def test_connections_add_up_over_live_processes_heights_and_readiness_do_not(
    tmp_path: Path,
) -> None:
    with child(tmp_path, 3, 100, 1) as first, child(tmp_path, 4, 102, 0):
        assert value(tmp_path, "wspool_open_connections", {"role": "worker"}) == 7
        assert value(tmp_path, "wspool_current_block_height") == 102
        assert value(tmp_path, "wspool_ready", {"check": "postgres"}) == 0
        first.kill()
        first.wait()
        mark_process_dead(first.pid, str(tmp_path))
        # A dead process's connections are gone; the height it saw is still the highest seen.
        assert value(tmp_path, "wspool_open_connections", {"role": "worker"}) == 4
        assert value(tmp_path, "wspool_current_block_height") == 102


def rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_process_figures_are_summed_over_the_supervisors_children_only(tmp_path: Path) -> None:
    with child(tmp_path, 1, 1, 1) as first, child(tmp_path, 1, 1, 1) as second:
        # Pid 1 has a file too (a dead child's pid since reused), but is not our child.
        (tmp_path / "counter_1.db").touch()
        collected = {
            sample.name: sample.value
            for family in SiblingProcesses(str(tmp_path), os.getpid()).collect()
            for sample in family.samples
        }
        assert collected["process_resident_memory_bytes"] == rss(first.pid) + rss(second.pid)
        assert collected["process_cpu_seconds_total"] > 0
        # The control: the test process's own parent has no children with files here.
        others = SiblingProcesses(str(tmp_path), os.getppid()).collect()
        assert [s.value for family in others for s in family.samples] == [0.0, 0.0]
