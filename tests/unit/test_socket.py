"""Frames dispatched on `type`: typed, untyped and unknown frames, per role."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from node_server.ws import NODE, on_job
from shared.errors import ProtocolError
from shared.protocol import NodeJob, Welcome, WorkerSolution
from shared.websocket.steps import FrameTable
from worker_server.ws import WORKER, on_solution

JOB = {"epoch_challenge": {"epoch_number": 1}, "proof_target": 2048, "block_height": 17}
SOLUTION = {
    "task_id": str(uuid.uuid4()),
    "solution": {"partial_solution": {"nonce": 42}},
    "solution_target": 4096,
}
WELCOME = {
    "ip": "203.0.113.7",
    "address": "aleo1",
    "hardware": "gpu",
    "hardware_id": "gpu-0",
    "caption": "rig",
}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def handler(self, name: str) -> Any:
        async def handle(session: Recorder, message: Any) -> None:
            session.seen.append((name, message))

        return handle


def test_each_role_has_its_table() -> None:
    assert NODE.frames.handlers == {NodeJob: on_job}
    assert WORKER.frames.handlers == {WorkerSolution: on_solution}


@pytest.mark.parametrize("typed", [True, False])
def test_a_node_frame_is_a_job_typed_or_not(typed: bool) -> None:
    frame = {**JOB, "type": "job"} if typed else JOB
    assert isinstance(NODE.frames.frames.parse(orjson.dumps(frame)), NodeJob)


@pytest.mark.parametrize("typed", [True, False])
def test_a_worker_frame_after_the_welcome_is_a_solution(typed: bool) -> None:
    frame = {**SOLUTION, "type": "solution"} if typed else SOLUTION
    assert isinstance(WORKER.frames.frames.parse(orjson.dumps(frame)), WorkerSolution)


@pytest.mark.parametrize(
    ("role", "frame", "detail"),
    [
        (NODE, {**JOB, "type": "solution"}, "type: Input should be 'job'"),
        (NODE, {**JOB, "type": ["job"]}, "type: Input should be 'job'"),
        (WORKER, {**SOLUTION, "type": "welcome"}, "type: Input should be 'solution'"),
        (WORKER, {**SOLUTION, "type": "nonsense"}, "type: Input should be 'solution'"),
        (NODE, {**JOB, "block_height": "x"}, "block_height: Input should be a valid integer"),
        (NODE, [1, 2], "message must be a JSON object"),
    ],
)
def test_unknown_types_and_bad_frames_are_invalid_messages(
    role: Any, frame: object, detail: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        role.frames.frames.parse(orjson.dumps(frame))
    assert caught.value.code == "invalid_message"
    assert caught.value.detail == detail


async def test_a_table_dispatches_each_type_to_its_handler() -> None:
    recorder = Recorder()
    table = FrameTable(
        {WorkerSolution: recorder.handler("solution"), Welcome: recorder.handler("welcome")},
        default=WorkerSolution,
    )
    await table.dispatch(recorder, orjson.dumps(SOLUTION))
    await table.dispatch(recorder, orjson.dumps({**WELCOME, "type": "welcome"}))
    await table.dispatch(recorder, orjson.dumps({**SOLUTION, "type": "solution"}))
    assert [(name, type(message)) for name, message in recorder.seen] == [
        ("solution", WorkerSolution),
        ("welcome", Welcome),
        ("solution", WorkerSolution),
    ]
    with pytest.raises(ProtocolError):
        await table.dispatch(recorder, orjson.dumps({**SOLUTION, "type": "job"}))


def test_the_default_must_be_in_the_table() -> None:
    with pytest.raises(ValueError, match="default"):
        FrameTable({NodeJob: on_job}, default=WorkerSolution)
