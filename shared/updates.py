"""What the fan-out hands each connection: Kafka records decoded once.

A record becomes a `JobUpdate` / `SolutionUpdate` with its client frame
already encoded, so every connection's filter (`shared.filters`) decides
without touching JSON, and a broadcast encodes each frame once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.fanout import Stream
from shared.kafka import JOB_TOPIC, SOLUTION_TOPIC
from shared.protocol import JobRecord, SolutionRecord, job_frame, parse, solution_frame


@dataclass(frozen=True, slots=True)
class JobUpdate:
    block_height: int
    task_id: uuid.UUID
    frame: bytes
    received_at: int


@dataclass(frozen=True, slots=True)
class SolutionUpdate:
    solution_height: int
    solution_target: int
    key: tuple[uuid.UUID, str]
    frame: bytes
    received_at: int
    challenge_digest: str | None = None  # None: from before digests, matches any


def decode_job(value: bytes) -> JobUpdate:
    record = parse(JobRecord, value)
    return JobUpdate(record.block_height, record.task_id, job_frame(record), record.received_at)


def decode_solution(value: bytes) -> SolutionUpdate:
    record = parse(SolutionRecord, value)
    return SolutionUpdate(
        record.solution_height,
        record.solution_target,
        (record.task_id, record.nonce),
        solution_frame(record),
        record.received_at,
        record.challenge_digest,
    )


def _height(update: JobUpdate) -> int:
    return update.block_height


# What each websocket server fans out. Workers joining late are sent the newest job.
JOB_STREAM = Stream(JOB_TOPIC, decode_job, replay_last=True, newest_by=_height)
SOLUTION_STREAM = Stream(SOLUTION_TOPIC, decode_solution)
