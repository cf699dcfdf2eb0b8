"""worker_server's current job: which update replaces it, in what order, and its gauges."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from worker_server.jobs import CurrentJob, JobUpdate

S = 10**9  # ns


def _gauges() -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("wspool_current_job_height"),
        REGISTRY.get_sample_value("wspool_current_job_timestamp_seconds"),
    )


def job(height: int, stored_s: int) -> JobUpdate:
    return JobUpdate(height, uuid.uuid4(), b"{}", stored_s * S, as_of=stored_s * S)


def reset(height: int | None, read_s: int) -> JobUpdate:
    if height is None:
        return JobUpdate(-1, None, b"", read_s * S, reset=True, as_of=read_s * S)
    return JobUpdate(height, uuid.uuid4(), b"{}", read_s * S, reset=True, as_of=read_s * S)


def loaded_at(read_s: int, height: int, stored_s: int) -> CurrentJob:
    """A current job as the start-up read of Postgres left it."""
    current = CurrentJob()
    current.from_postgres(job(height, stored_s), read_s * S)
    return current


def test_newer_jobs_replace_it_lower_ones_never_do() -> None:
    current = loaded_at(1_000, 100, 900)
    lower = job(99, 1_010)
    current.observe(lower)
    assert current.height == 100, "below the current height: stored, never current"
    current.observe(job(100, 1_015))
    assert current.height == 100
    higher = job(101, 1_020)
    current.observe(higher)
    assert current.job is higher  # the control: a higher job, stored after the read


def test_a_reset_replaces_it_whatever_its_height_once() -> None:
    current = loaded_at(1_000, 100, 900)
    current.observe(job(101, 1_010))
    retired = reset(100, 1_020)  # 101 retired: 100 current again
    current.observe(retired)
    assert current.job is retired and current.height == 100
    current.observe(reset(101, 1_020))
    assert current.job is retired, "the same reset read again changes nothing"
    assert current.height == 100


def test_what_kafka_held_from_before_the_read_changes_nothing() -> None:
    current = loaded_at(1_000, 100, 900)
    current.observe(job(300, 950))  # stored before the read, so retired since: history
    current.observe(reset(50, 980))  # a retire the read already accounts for
    assert current.height == 100
    current.observe(job(101, 1_001))
    assert current.height == 101  # the control: stored after the read


def test_a_job_received_before_a_reset_is_history_after_it() -> None:
    current = loaded_at(1_000, 100, 900)
    current.observe(job(300, 1_005))  # a wrong job, retired at 1_010
    current.observe(reset(100, 1_010))
    current.observe(job(300, 1_005))  # the log read again after the broker lost it
    assert current.height == 100
    current.observe(reset(None, 1_020))  # every job retired: nothing to send
    assert current.job is None
    current.observe(job(5, 1_030))
    assert current.height == 5  # a new chain, from its first job


def test_the_gauges_follow_it() -> None:
    current = loaded_at(1_000, 100, 900)
    assert _gauges() == (100, 900)
    current.observe(job(99, 1_010))
    assert _gauges() == (100, 900)
    current.observe(job(101, 1_020))
    assert _gauges() == (101, 1_020)
    current.observe(reset(100, 1_030))
    assert _gauges() == (100, 1_030)


def test_what_the_fan_out_brought_before_the_read_ended_is_weighed_against_it() -> None:
    stale, fresh = CurrentJob(), CurrentJob()
    stale.observe(job(300, 950))  # replayed from Kafka while Postgres was being read
    stale.from_postgres(job(100, 900), 1_000 * S)
    assert stale.height == 100 and stale.loaded.is_set()
    fresh.observe(job(101, 1_001))  # stored after the read began
    fresh.from_postgres(job(100, 900), 1_000 * S)
    assert fresh.height == 101
    later = CurrentJob()
    later.observe(reset(99, 1_002))  # a retire read after ours
    later.from_postgres(job(100, 900), 1_000 * S)
    assert later.height == 99
