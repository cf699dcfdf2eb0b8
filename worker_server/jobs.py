"""What worker_server fans out: job records decoded once, the filter, the current job.

A Kafka record becomes a `JobUpdate` with its client frame already encoded,
so every worker connection's filter (`NewerJobsOnly`) decides without
touching JSON, and a broadcast encodes each frame once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.codec import parse_internal
from shared.errors import ProtocolError
from shared.fanout.stream import Stream
from shared.metrics import CURRENT_JOB_HEIGHT, CURRENT_JOB_TIMESTAMP
from shared.protocol import CurrentJobRecord, JobRecord, job_frame
from shared.routes import JOB


@dataclass(frozen=True, slots=True)
class JobUpdate:
    block_height: int  # -1 for a reset with no job left
    task_id: uuid.UUID | None
    frame: bytes  # empty for a reset with no job left
    received_at: int
    # A job made current again because a newer one was retired: filters reset to it.
    reset: bool = False
    # The lowest proof target waiting at this height (None: not known).
    proof_target: int | None = None


def decode_job(value: bytes) -> JobUpdate:
    """A job, or (a record naming the job it `retired`) the job that is current again."""
    try:
        record = parse_internal(JobRecord, value)
    except ProtocolError:  # not a job: then it must say which job is current (rare)
        reset = parse_internal(CurrentJobRecord, value)
    else:
        return JobUpdate(
            record.block_height,
            record.task_id,
            job_frame(record),
            record.received_at,
            proof_target=record.proof_target,
        )
    if reset.current is None:
        return JobUpdate(-1, None, b"", reset.received_at, reset=True)
    current = reset.current
    return JobUpdate(
        current.block_height,
        current.task_id,
        job_frame(current),
        reset.received_at,
        reset=True,
        proof_target=current.proof_target,
    )


@dataclass(slots=True)
class NewerJobsOnly:
    """A worker gets a job only if its height is above the last one it got.

    A reset (the job current again after a newer one was retired) is always
    taken, and sent unless no job is left.
    """

    last_height: int = -1

    def accept(self, update: JobUpdate) -> bool:
        if update.reset:
            self.last_height = update.block_height
            return bool(update.frame)
        if update.block_height <= self.last_height:
            return False
        self.last_height = update.block_height
        return True


def _height(update: JobUpdate) -> int:
    return update.block_height


class CurrentJob:
    """The job workers are sent now, as the process's fan-out saw it, in two gauges.

    Newer heights replace it, and so does a retire's reset (whatever its
    height). In `per_connection` mode only connected workers' consumers see
    jobs, so the gauges stand still while no worker is connected.
    """

    def __init__(self) -> None:
        self.height: int | None = None

    def observe(self, update: JobUpdate) -> None:
        if update.reset or self.height is None or update.block_height > self.height:
            self.height = update.block_height
            CURRENT_JOB_HEIGHT.set(update.block_height)
            CURRENT_JOB_TIMESTAMP.set(update.received_at / 1e9)


# Workers joining late are sent the newest job.
JOB_STREAM = Stream(
    JOB.topic,
    decode_job,
    replay_last=True,
    newest_by=_height,
    resets=lambda u: u.reset,
    observe=CurrentJob().observe,
)
