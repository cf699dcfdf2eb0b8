"""What node_server fans out: solution records decoded once, and the two streams.

A Kafka record becomes a `SolutionUpdate` with its client frame already
encoded, so every node connection's filter (`node_server.expectations`)
decides without touching JSON, and a broadcast encodes each frame once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.codec import parse_internal
from shared.fanout.stream import Stream
from shared.protocol import SolutionRecord, solution_frame
from shared.routes import CANDIDATE, SOLUTION


@dataclass(frozen=True, slots=True)
class SolutionUpdate:
    solution_height: int
    solution_target: int
    key: tuple[uuid.UUID, str]
    frame: bytes
    received_at: int
    challenge_digest: str | None = None  # None: from before digests, matches any


def decode_solution(value: bytes) -> SolutionUpdate:
    record = parse_internal(SolutionRecord, value)
    return SolutionUpdate(
        record.solution_height,
        record.solution_target,
        (record.task_id, record.nonce),
        solution_frame(record),
        record.received_at,
        record.challenge_digest,
    )


# Shares and block candidates, each read by a fan-out of its own, so a backlog
# of shares never delays a candidate.
SOLUTION_STREAM = Stream(SOLUTION.topic, decode_solution)
CANDIDATE_STREAM = Stream(CANDIDATE.topic, decode_solution)
