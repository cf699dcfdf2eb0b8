"""Property tests of protocol parsing: anything in, only ProtocolError out.

Whatever a client (or a broker) hands `parse()` — arbitrary bytes, arbitrary
JSON, JSON shaped almost like a real message — the result is a model or a
`ProtocolError`; an accepted message can be encoded and parses back equal.
Valid messages generated from the wire specification round-trip unchanged.
An `epoch_challenge` or `solution` written any way a client may write it
(duplicate keys, integers of any size) reaches the other side byte-for-byte
as JSON values, key order included, or is refused.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from shared.codec import encode, parse, parse_internal
from shared.errors import ProtocolError
from shared.protocol import (
    MAX_INT64,
    MAX_JSON_DEPTH,
    CurrentJobRecord,
    JobMessage,
    JobRecord,
    NodeJob,
    SolutionMessage,
    SolutionRecord,
    Welcome,
    WorkerSolution,
    job_frame,
    now_ns,
    solution_frame,
)
from tests.support import json_text
from tests.support.json_text import Pairs, problem, read, render

INBOUND: list[type[BaseModel]] = [
    NodeJob,
    Welcome,
    WorkerSolution,
    JobMessage,
    SolutionMessage,
    JobRecord,
    SolutionRecord,
]
FIELDS = sorted({name for model in INBOUND for name in model.model_fields} | {"partial_solution"})
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, including what orjson refuses (huge integers, lone surrogates).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)
almost_messages = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=8), json_values | st.uuids().map(str), max_size=8
)


def _encode_any(value: Any) -> bytes:
    """stdlib json writes what orjson wouldn't (2**70, inf, lone surrogates)."""
    return json.dumps(value).encode("utf-8", "surrogatepass")


def _parses_or_refuses(model: type[BaseModel], data: bytes | str) -> None:
    try:
        result = parse(model, data)
    except ProtocolError as error:
        assert error.code == "invalid_message" and error.detail
        return
    assert isinstance(result, model)
    assert parse(model, encode(result)) == result  # what we accept, we can pass on
    # `encode` skips pydantic's serializer: it must write what that would have.
    assert encode(result) == orjson.dumps(result.model_dump(mode="json"))
    assert parse_internal(model, encode(result)) == result


@pytest.mark.parametrize("model", INBOUND, ids=lambda m: m.__name__)
@PROPERTIES
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes(model: type[BaseModel], data: bytes) -> None:
    _parses_or_refuses(model, data)


@pytest.mark.parametrize("model", INBOUND, ids=lambda m: m.__name__)
@PROPERTIES
@given(value=json_values)
def test_arbitrary_json(model: type[BaseModel], value: Any) -> None:
    _parses_or_refuses(model, _encode_any(value))


@pytest.mark.parametrize("model", INBOUND, ids=lambda m: m.__name__)
@PROPERTIES
@given(value=almost_messages)
def test_json_shaped_like_messages(model: type[BaseModel], value: dict[str, Any]) -> None:
    _parses_or_refuses(model, _encode_any(value))


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@pytest.mark.parametrize("model", INBOUND, ids=lambda m: m.__name__)
@PROPERTIES
@given(text=st.text(max_size=256))
def test_arbitrary_text(model: type[BaseModel], text: str) -> None:
    assume(_is_utf8(text))  # a str with lone surrogates can't even be a frame
    _parses_or_refuses(model, text)


# Valid frames that carry a client's object; `{}` marks where it goes.
JOB_FRAME = '{"epoch_challenge": {}, "proof_target": 1, "block_height": 1}'
SOLUTION_FRAME = f'{{"task_id": "{uuid.UUID(int=1)}", "solution": {{}}, "solution_target": 1'
NESTABLE: dict[type[BaseModel], tuple[str, str]] = {
    NodeJob: ("epoch_challenge", JOB_FRAME),
    JobMessage: ("epoch_challenge", JOB_FRAME),
    WorkerSolution: ("solution", SOLUTION_FRAME + "}"),
    SolutionMessage: ("solution", SOLUTION_FRAME + ', "hardware_id": "h", "caption": "c"}'),
}


def _nested(field: str, frame: str, depth: int, pattern: list[bool]) -> str:
    """`frame` whose object is `depth` levels deep, in objects (True) and arrays (False)
    taken in turn from `pattern`."""
    kinds = list(itertools.islice(itertools.cycle(pattern), depth - 1))
    opening = "".join('{"k": ' if is_object else "[" for is_object in kinds)
    closing = "".join("}" if is_object else "]" for is_object in reversed(kinds))
    nonce = '"partial_solution": {"nonce": 1}, ' if field == "solution" else ""
    return frame.replace("{}", "{" + nonce + '"deep": ' + opening + "1" + closing + "}", 1)


@pytest.mark.parametrize("model", list(NESTABLE), ids=lambda m: m.__name__)
@given(
    # Past ~1000 levels orjson refuses the frame itself, before our limit is asked.
    depth=st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=1000),
    pattern=st.lists(st.booleans(), min_size=1, max_size=8),
)
@settings(max_examples=25, deadline=None)
def test_deep_nesting_is_refused_not_a_crash(
    model: type[BaseModel], depth: int, pattern: list[bool]
) -> None:
    field, frame = NESTABLE[model]
    # The control: the same frame at the limit is accepted.
    assert isinstance(parse(model, _nested(field, frame, MAX_JSON_DEPTH, pattern)), model)
    with pytest.raises(ProtocolError) as refused:
        parse(model, _nested(field, frame, depth, pattern))
    assert refused.value.code == "invalid_message"
    assert refused.value.detail.startswith(f"{field}: ")
    assert refused.value.detail.endswith(f"nested deeper than {MAX_JSON_DEPTH} levels")


# --- valid messages round-trip -----------------------------------------------

safe_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
int64 = st.integers(min_value=0, max_value=MAX_INT64)
safe_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(safe_text, inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(safe_text, safe_json, max_size=6)
optional_type = st.sampled_from([{}, {"type": None}])

jobs = st.fixed_dictionaries(
    {"epoch_challenge": objects, "proof_target": int64, "block_height": int64},
    optional={"type": st.just("job")},
)
welcomes = st.fixed_dictionaries(
    {
        "ip": safe_text.filter(lambda s: len(s) <= 45),
        "address": safe_text.filter(lambda s: len(s) <= 255),
        "hardware": safe_text.filter(lambda s: len(s) <= 255),
        "hardware_id": safe_text.filter(lambda s: len(s) <= 255),
        "caption": safe_text.filter(lambda s: len(s) <= 255),
    },
    optional={"type": st.just("welcome")},
)
nonces = st.integers(min_value=-(2**63), max_value=2**63 - 1) | safe_text.filter(
    lambda s: len(s) <= 255
)
solution_bodies = st.builds(
    lambda extra, partial, nonce: {**extra, "partial_solution": {**partial, "nonce": nonce}},
    objects,
    objects,
    nonces,
)
solutions = st.fixed_dictionaries(
    {"task_id": st.uuids(), "solution": solution_bodies, "solution_target": int64},
    optional={"type": st.just("solution")},
)


@PROPERTIES
@given(message=jobs)
def test_valid_jobs_round_trip(message: dict[str, Any]) -> None:
    parsed = parse(NodeJob, orjson.dumps(message))
    assert parsed.epoch_challenge == message["epoch_challenge"]
    assert (parsed.proof_target, parsed.block_height) == (
        message["proof_target"],
        message["block_height"],
    )
    forwarded = JobMessage(**parsed.model_dump(exclude={"type"}))
    assert parse(JobMessage, encode(forwarded)) == forwarded


@PROPERTIES
@given(message=welcomes)
def test_valid_welcomes_round_trip(message: dict[str, Any]) -> None:
    parsed = parse(Welcome, orjson.dumps(message))
    assert parsed.model_dump(exclude={"type"}) == {k: v for k, v in message.items() if k != "type"}


@PROPERTIES
@given(message=solutions)
def test_valid_solutions_round_trip_unchanged(message: dict[str, Any]) -> None:
    parsed = parse(WorkerSolution, orjson.dumps(message))
    assert parsed.task_id == message["task_id"]
    # Nodes receive exactly the object the worker sent: same keys, same values.
    assert orjson.loads(orjson.dumps(parsed.solution)) == message["solution"]
    assert parsed.nonce == str(message["solution"]["partial_solution"]["nonce"])
    record = SolutionRecord(
        task_id=parsed.task_id,
        solution_target=parsed.solution_target,
        solution=parsed.solution,
        solution_height=1,
        received_at=0,
    )
    assert parse(SolutionRecord, encode(record)).solution == message["solution"]


def test_a_nested_record_encodes_as_pydantic_would() -> None:
    job = JobRecord(
        task_id=uuid.uuid4(),
        epoch_challenge={"b": 1, "a": [1.5, None]},
        block_height=7,
        created_at=time.time(),
        received_at=now_ns(),
        proof_target=None,
    )
    for record in (
        CurrentJobRecord(retired=uuid.uuid4(), current=job, received_at=1),
        CurrentJobRecord(retired=uuid.uuid4(), current=None, received_at=1),
    ):
        assert encode(record) == orjson.dumps(record.model_dump(mode="json"))
        assert parse_internal(CurrentJobRecord, encode(record)) == record


# --- objects reach the other side exactly as written, or are refused ------------


REFUSALS = ("duplicate key", "integer larger than 64 bits")


def _carried(frame: str, field: str, tree: Any, forward: Any) -> None:
    """`tree`, sent as `field` of `frame`, comes out of `forward` exactly, or is refused."""
    expected = problem(tree)
    try:
        forwarded = forward(frame)
    except ProtocolError as error:
        assert expected is not None, f"refused what could be carried: {error.detail}"
        assert error.detail.startswith(field), error.detail
        assert any(kind in error.detail for kind in REFUSALS), error.detail
        event(f"refused: {expected}")
        return
    assert expected is None, f"accepted a frame with a {expected}"
    event("carried")
    # Same keys in the same order, same values, every number of the same type.
    assert render(forwarded) == render(tree)


def _forward_job(frame: str) -> Any:
    """What a worker receives for a node's job, the way the services pass it on."""
    job = parse(NodeJob, frame)
    body = encode(JobMessage(**job.model_dump(exclude={"type"})))
    message = parse(JobMessage, body)
    record = JobRecord(
        task_id=uuid.uuid4(),
        epoch_challenge=message.epoch_challenge,
        block_height=message.block_height,
        created_at=time.time(),
        received_at=now_ns(),
    )
    return read(job_frame(parse(JobRecord, encode(record))))[1][1]


def _forward_solution(frame: str) -> Any:
    """What a node receives for a worker's solution, the way the services pass it on."""
    sent = parse(WorkerSolution, frame)
    body = encode(
        SolutionMessage(**sent.model_dump(exclude={"type"}), hardware_id="gpu-0", caption="rig-7")
    )
    message = parse(SolutionMessage, body)
    record = SolutionRecord(
        task_id=message.task_id,
        solution_target=message.solution_target,
        solution=message.solution,
        solution_height=1,
        received_at=now_ns(),
    )
    return read(solution_frame(parse(SolutionRecord, encode(record))))


@PROPERTIES
@given(challenge=json_text.objects, height=int64, escape_colons=st.booleans())
def test_epoch_challenges_are_forwarded_exactly_or_refused(
    challenge: Pairs, height: int, escape_colons: bool
) -> None:
    # Colons in strings written as escapes must not let the counting miss a duplicate.
    frame = f'{{"type": "job", "epoch_challenge": {render(challenge, escape_colons)}, '
    frame += f'"proof_target": 1, "block_height": {height}}}'
    _carried(frame, "epoch_challenge", challenge, _forward_job)


@PROPERTIES
@given(
    extra=json_text.objects,
    partial=json_text.objects,
    nonce=json_text.integers | safe_text.filter(lambda s: len(s) <= 255),
)
def test_solutions_are_forwarded_exactly_or_refused(
    extra: Pairs, partial: Pairs, nonce: int | str
) -> None:
    tree = Pairs([("partial_solution", Pairs([("nonce", nonce), *partial])), *extra])
    frame = f'{{"task_id": "{uuid.uuid4()}", "solution": {render(tree)}, "solution_target": 7}}'
    _carried(frame, "solution", tree, _forward_solution)
