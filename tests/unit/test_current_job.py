"""worker_server's current-job gauges follow what workers are sent: newer heights and retires."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from worker_server.jobs import CurrentJob, JobUpdate


def _gauges() -> tuple[float | None, float | None]:
    return (
        REGISTRY.get_sample_value("wspool_current_job_height"),
        REGISTRY.get_sample_value("wspool_current_job_timestamp_seconds"),
    )


def _update(height: int, received_s: int, reset: bool = False) -> JobUpdate:
    return JobUpdate(height, uuid.uuid4(), b"{}", received_s * 10**9, reset=reset)


def test_newer_jobs_and_retires_move_the_gauges_older_jobs_do_not() -> None:
    current = CurrentJob()
    current.observe(_update(100, 1_000))
    assert _gauges() == (100, 1_000)
    current.observe(_update(99, 1_010))  # an older height is not what workers get
    assert _gauges() == (100, 1_000)
    current.observe(_update(101, 1_020))
    assert _gauges() == (101, 1_020)
    current.observe(_update(100, 1_030, reset=True))  # 101 retired: 100 is current again
    assert _gauges() == (100, 1_030)
