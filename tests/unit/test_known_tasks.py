"""worker_server's task cache: the proof target that tells candidates from shares."""

from __future__ import annotations

import uuid

from worker_server.jobs import JobUpdate
from worker_server.store import KnownTasks


def update(task_id: uuid.UUID, proof_target: int | None, height: int = 7) -> JobUpdate:
    return JobUpdate(height, task_id, b"{}", 0, proof_target=proof_target)


def test_a_job_from_the_fan_out_brings_its_target_and_a_lower_one_replaces_it() -> None:
    tasks, task = KnownTasks(), uuid.uuid4()
    assert tasks.proof_target(task) is None
    tasks.offer(update(task, 1000))
    assert tasks.proof_target(task) == 1000
    tasks.offer(update(task, 10))
    assert tasks.proof_target(task) == 10
    tasks.offer(update(task, 5000))  # targets only go down
    tasks.offer(update(task, None))  # nor are they forgotten
    assert tasks.proof_target(task) == 10


def test_a_reset_with_no_job_left_is_ignored_and_the_cache_stays_bounded() -> None:
    tasks = KnownTasks(capacity=2)
    tasks.offer(JobUpdate(-1, None, b"", 0, reset=True))
    first, *rest = [uuid.uuid4() for _ in range(3)]
    for task in (first, *rest):
        tasks.offer(update(task, 1))
    assert tasks.proof_target(first) is None
    assert [tasks.proof_target(task) for task in rest] == [1, 1]


def test_ids_found_missing_are_bounded_and_a_job_from_the_fan_out_clears_its_id() -> None:
    tasks = KnownTasks(capacity=2)
    first, *rest = [uuid.uuid4() for _ in range(3)]
    for task_id in (first, *rest):
        tasks._remember_missing(task_id)
    assert list(tasks._missing) == rest, "the oldest is dropped first"
    tasks.offer(update(rest[0], 10))
    assert list(tasks._missing) == rest[1:]
