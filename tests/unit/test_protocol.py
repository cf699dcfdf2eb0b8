"""Protocol v1 parsing at the edge: what is accepted, what is refused and why."""

from __future__ import annotations

import tracemalloc
import uuid

import orjson
import pytest

from shared.codec import parse
from shared.errors import ProtocolError
from shared.protocol import (
    MAX_INT64,
    MAX_JSON_DEPTH,
    JobRecord,
    NodeJob,
    SolutionRecord,
    Welcome,
    WorkerSolution,
    error_frame,
    job_frame,
    solution_frame,
)

JOB = {
    "type": "job",
    "epoch_challenge": {"epoch_number": 123, "epoch_block_hash": "ab1", "degree": 8191},
    "proof_target": 2048,
    "block_height": 17,
}
WELCOME = {
    "type": "welcome",
    "ip": "203.0.113.7",
    "address": "aleo1xyz",
    "hardware": "RTX 4090",
    "hardware_id": "gpu-0",
    "caption": "rig-7",
}
SOLUTION = {
    "type": "solution",
    "task_id": str(uuid.uuid4()),
    "solution": {
        "partial_solution": {"address": "aleo1", "nonce": 42, "commitment": "c"},
        "proof.w": {"x": "1", "y": "2", "infinity": False},
    },
    "solution_target": 4096,
}


def refused(model: type, message: object) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse(model, orjson.dumps(message) if not isinstance(message, bytes) else message)
    assert caught.value.code == "invalid_message"
    return caught.value.detail


def test_valid_job_parses_with_or_without_type_and_ignores_unknown_keys() -> None:
    job = parse(NodeJob, orjson.dumps({**JOB, "extra": [1, 2]}))
    assert (job.block_height, job.proof_target) == (17, 2048)
    assert job.epoch_challenge == JOB["epoch_challenge"]
    untyped = {k: v for k, v in JOB.items() if k != "type"}
    assert parse(NodeJob, orjson.dumps(untyped)).block_height == 17


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"block_height": "17"}, "block_height: Input should be a valid integer"),
        ({"block_height": True}, "block_height: Input should be a valid integer"),
        ({"block_height": 17.0}, "block_height: Input should be a valid integer"),
        ({"proof_target": False}, "proof_target: Input should be a valid integer"),
        ({"block_height": -1}, "block_height: Input should be greater than or equal to 0"),
        ({"block_height": MAX_INT64 + 1}, "block_height: Input should be less than or equal to"),
        ({"epoch_challenge": [1, 2]}, "epoch_challenge: Input should be a valid dictionary"),
        ({"epoch_challenge": "x"}, "epoch_challenge: Input should be a valid dictionary"),
        ({"type": "solution"}, "type: Input should be 'job'"),
    ],
)
def test_invalid_job_fields_are_named(change: dict, detail: str) -> None:
    assert refused(NodeJob, {**JOB, **change}).startswith(detail)


def test_integer_bounds_are_inclusive() -> None:
    job = parse(NodeJob, orjson.dumps({**JOB, "block_height": MAX_INT64, "proof_target": 0}))
    assert job.block_height == MAX_INT64 and job.proof_target == 0


@pytest.mark.parametrize("missing", ["epoch_challenge", "proof_target", "block_height"])
def test_missing_job_field(missing: str) -> None:
    message = {k: v for k, v in JOB.items() if k != missing}
    assert refused(NodeJob, message) == f"{missing}: Field required"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "message must be a JSON object"),
        (b"17", "message must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_frames_that_are_not_objects(raw: bytes, detail: str) -> None:
    assert refused(NodeJob, raw).startswith(detail)


def test_welcome_requires_all_five_strings_within_limits() -> None:
    assert parse(Welcome, orjson.dumps(WELCOME)).hardware_id == "gpu-0"
    for field in ("ip", "address", "hardware", "hardware_id", "caption"):
        assert refused(Welcome, {k: v for k, v in WELCOME.items() if k != field}) == (
            f"{field}: Field required"
        )
        assert refused(Welcome, {**WELCOME, field: 7}).startswith(f"{field}: Input should be")
    assert "at most 45 characters" in refused(Welcome, {**WELCOME, "ip": "1" * 46})
    assert "at most 255 characters" in refused(Welcome, {**WELCOME, "caption": "c" * 256})
    assert "NUL" in refused(Welcome, {**WELCOME, "caption": "a\x00b"})
    assert refused(Welcome, {**WELCOME, "type": "job"}).startswith("type:")


def test_solution_keeps_the_object_exactly_and_needs_a_nonce() -> None:
    parsed = parse(WorkerSolution, orjson.dumps(SOLUTION))
    assert parsed.solution == SOLUTION["solution"]
    assert list(parsed.solution) == ["partial_solution", "proof.w"]
    assert parsed.nonce == "42"
    as_string = {**SOLUTION, "solution": {"partial_solution": {"nonce": "abc"}}}
    assert parse(WorkerSolution, orjson.dumps(as_string)).nonce == "abc"
    for bad in (
        {},
        {"partial_solution": 1},
        {"partial_solution": {}},
        {"partial_solution": {"nonce": True}},
        {"partial_solution": {"nonce": 1.5}},
        {"partial_solution": {"nonce": None}},
    ):
        assert "nonce" in refused(WorkerSolution, {**SOLUTION, "solution": bad}) or (
            "partial_solution" in refused(WorkerSolution, {**SOLUTION, "solution": bad})
        )
    assert refused(WorkerSolution, {**SOLUTION, "task_id": "nope"}).startswith("task_id:")
    assert refused(WorkerSolution, {**SOLUTION, "solution_target": True}).startswith(
        "solution_target:"
    )


def test_nesting_depth_and_nul_are_refused_in_objects() -> None:
    deep: dict = {}
    cursor = deep
    for _ in range(MAX_JSON_DEPTH + 1):
        cursor["a"] = {}
        cursor = cursor["a"]
    assert "nested deeper" in refused(NodeJob, {**JOB, "epoch_challenge": deep})
    assert "NUL" in refused(NodeJob, {**JOB, "epoch_challenge": {"k": "a\x00"}})


def test_outgoing_frames_have_exactly_the_wire_shape() -> None:
    task_id = uuid.uuid4()
    record = JobRecord(
        task_id=task_id,
        epoch_challenge=JOB["epoch_challenge"],
        block_height=17,
        created_at=1.5,
        received_at=10,
    )
    assert orjson.loads(job_frame(record)) == {
        "task_id": str(task_id),
        "epoch_challenge": JOB["epoch_challenge"],
    }
    solution = SolutionRecord(
        task_id=task_id,
        solution_target=1,
        solution=SOLUTION["solution"],
        solution_height=17,
        received_at=10,
    )
    assert solution_frame(solution) == orjson.dumps(SOLUTION["solution"])
    assert orjson.loads(error_frame("invalid_message", "x")) == {
        "type": "error",
        "code": "invalid_message",
        "detail": "x",
    }


def test_a_solution_frame_held_in_memory_costs_about_its_length() -> None:
    """node_server keeps thousands of these for minutes (its recovery window)."""
    record = SolutionRecord(
        task_id=uuid.uuid4(),
        solution_target=1,
        solution={"partial_solution": {"address": "aleo1x", "nonce": "1", "commitment": "c"}},
        solution_height=1,
        received_at=0,
    )
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    frames = [solution_frame(record) for _ in range(100)]
    held = (tracemalloc.get_traced_memory()[0] - before) / len(frames)
    tracemalloc.stop()
    assert held < len(frames[0]) + 200, f"{held:.0f} bytes held for a {len(frames[0])}-byte frame"
