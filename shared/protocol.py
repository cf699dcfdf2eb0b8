"""Wire protocol v1 and the internal records, as typed models.

Everything a client, RabbitMQ or Kafka hands us is parsed into these models
at the edge (`shared.codec`); the rest of the code passes them around. Field names and output
shapes are fixed by the existing pool clients (docs/protocol.md): do
not rename. Each role's frames form one union told apart by `type`
(`Frames`), so a new message type is one model here plus one handler.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
)

MAX_INT64 = 2**63 - 1
MAX_JSON_DEPTH = 32

Int64 = Annotated[StrictInt, Field(ge=0, le=MAX_INT64)]


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    """Reject what Postgres jsonb can't hold (NUL) and nesting deep enough to hurt.

    Depth counts objects and arrays: `{"a": {"b": 1}}` is 2 levels deep.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list) and level > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise ValueError("contains a NUL character")
                stack.append((child, level + 1))
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
        elif isinstance(item, str) and "\x00" in item:
            raise ValueError("contains a NUL character")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
Text = Annotated[str, AfterValidator(_no_nul)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- node <-> node_server ----------------------------------------------------


class NodeJob(_Message):
    """A job a node sends: the challenge workers should prove against."""

    type: Literal["job"] | None = None
    epoch_challenge: JsonObject
    proof_target: Int64
    block_height: Int64


# --- worker <-> worker_server ------------------------------------------------


class Welcome(_Message):
    """The first frame of every worker connection."""

    type: Literal["welcome"] | None = None
    ip: Text = Field(max_length=45)
    address: Text = Field(max_length=255)
    hardware: Text = Field(max_length=255)
    hardware_id: Text = Field(max_length=255)
    caption: Text = Field(max_length=255)


def _has_nonce(value: dict[str, Any]) -> dict[str, Any]:
    partial = value.get("partial_solution")
    if not isinstance(partial, dict):
        raise ValueError("partial_solution must be an object")
    nonce = partial.get("nonce")
    if isinstance(nonce, bool) or not isinstance(nonce, int | str):
        raise ValueError("partial_solution.nonce must be an integer or a string")
    if len(str(nonce)) > 255:
        raise ValueError("partial_solution.nonce is longer than 255 characters")
    return value


SolutionObject = Annotated[JsonObject, AfterValidator(_has_nonce)]


class WorkerSolution(_Message):
    """A solution a worker submits for a task it was sent."""

    type: Literal["solution"] | None = None
    task_id: uuid.UUID
    # Kept as the exact object the worker sent: nodes receive it unchanged.
    solution: SolutionObject
    solution_target: Int64

    @property
    def nonce(self) -> str:
        return str(self.solution["partial_solution"]["nonce"])


# --- RabbitMQ bodies and Kafka records ---------------------------------------


class JobMessage(_Message):
    """AMQP body on exchange `job`; received_at travels in a header."""

    epoch_challenge: JsonObject
    proof_target: Int64
    block_height: Int64


class SolutionMessage(_Message):
    """AMQP body on exchange `solution`: the worker's solution plus who sent it."""

    task_id: uuid.UUID
    solution: SolutionObject
    solution_target: Int64
    hardware_id: Text = Field(max_length=255)
    caption: Text = Field(max_length=255)

    @property
    def nonce(self) -> str:
        return str(self.solution["partial_solution"]["nonce"])


class JobRecord(_Message):
    """Value of a record on Kafka topic `job` (key: block height)."""

    task_id: uuid.UUID
    epoch_challenge: dict[str, Any]
    block_height: int
    created_at: float
    received_at: int
    # The lowest proof target any node sent for this height (None: not known,
    # a record from before it was carried). A record for a height already sent
    # carries a lowered target.
    proof_target: int | None = None


class CurrentJobRecord(_Message):
    """Value of a record on Kafka topic `job` after an operator retired a job.

    Every worker's "newer heights only" filter is reset to `current` (the
    newest job not retired; None when none is left) and the worker is sent it.
    """

    retired: uuid.UUID
    current: JobRecord | None
    received_at: int


class SolutionRecord(_Message):
    """Value of a record on Kafka topic `solution` (key: task_id)."""

    task_id: uuid.UUID
    solution_target: int
    solution: dict[str, Any]
    solution_height: int
    received_at: int
    # The `challenge_digest` of the job it answers; None in records written
    # before the digest existed (they match any challenge at their height).
    challenge_digest: str | None = None

    @property
    def nonce(self) -> str:
        return str(self.solution["partial_solution"]["nonce"])


def challenge_digest(epoch_challenge: dict[str, Any]) -> str:
    """A short fingerprint of a challenge, the same for equal objects in any key order.

    Tells two jobs at one height apart (a fork, a misconfigured node), so a node
    only gets solutions for the challenge it sent.
    """
    canonical = orjson.dumps(epoch_challenge, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def job_frame(record: JobRecord) -> bytes:
    """The frame every worker receives for a job: exactly these two keys."""
    return orjson.dumps({"task_id": str(record.task_id), "epoch_challenge": record.epoch_challenge})


def solution_frame(record: SolutionRecord) -> bytes:
    """The frame a node receives: the worker's solution object, unchanged.

    Copied to its own size: orjson's result keeps its whole write buffer
    (4 KiB for a 200-byte frame, measured with orjson 3.13), and node_server
    holds these frames for minutes in its recovery window.
    """
    return bytes(memoryview(orjson.dumps(record.solution)))


def error_frame(code: str, detail: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "detail": detail})


def now_ns() -> int:
    return time.time_ns()
