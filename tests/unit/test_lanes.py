"""process_solution_worker's lanes: which queues a process consumes."""

from __future__ import annotations

import pytest

from process_solution_worker.app import create_app, lanes_per_process
from process_solution_worker.settings import ProcessSolutionWorkerSettings
from shared.pipeline.app import PIPELINES
from shared.routes import CANDIDATE, SOLUTION


@pytest.mark.parametrize(
    ("lanes", "queues"),
    [
        ("all", [SOLUTION.queue, CANDIDATE.queue]),
        ("shares", [SOLUTION.queue]),
        ("candidates", [CANDIDATE.queue]),
    ],
)
def test_a_process_consumes_the_queues_of_its_lanes(lanes: str, queues: list[str]) -> None:
    app = create_app(ProcessSolutionWorkerSettings(lanes=lanes))
    assert [pipeline.queue for pipeline in app[PIPELINES]] == queues


def test_with_several_processes_the_first_has_the_candidates_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = "PROCESS_SOLUTION_WORKER_LANES"
    children = lanes_per_process(ProcessSolutionWorkerSettings(processes=3))
    assert children == [{key: "candidates"}, {key: "shares"}, {key: "shares"}]
    # Each child reads its lane from the environment the supervisor gives it.
    monkeypatch.setenv(key, "candidates")
    assert ProcessSolutionWorkerSettings().lanes == "candidates"


def test_an_unknown_lane_is_refused() -> None:
    with pytest.raises(ValueError, match="lanes"):
        ProcessSolutionWorkerSettings(lanes="blocks")
