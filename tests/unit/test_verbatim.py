"""Objects are taken exactly as sent or refused naming the field (docs/protocol.md)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from shared.codec import parse
from shared.errors import ProtocolError
from shared.protocol import JobMessage, NodeJob, WorkerSolution
from shared.verbatim import MAX_INT, MIN_INT, changed, unchanged_for_sure

TASK = str(uuid.uuid4())


def solution_frame(nonce: str) -> bytes:
    """A solution frame written by hand: orjson.dumps could not write what we test."""
    return (
        b'{"type": "solution", "task_id": "' + TASK.encode() + b'", "solution": '
        b'{"partial_solution": {"address": "aleo1", "nonce": ' + nonce.encode() + b"}}, "
        b'"solution_target": 4096}'
    )


def job_frame(challenge: str) -> bytes:
    return b'{"epoch_challenge": ' + challenge.encode() + b', "proof_target": 1, "block_height": 2}'


def refused(model: type, data: bytes | str) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse(model, data)
    assert caught.value.code == "invalid_message"
    return caught.value.detail


@pytest.mark.parametrize("nonce", [MIN_INT, -1, 0, 2**63 - 1, 2**63, MAX_INT])
def test_integers_orjson_keeps_exactly_are_accepted_unchanged(nonce: int) -> None:
    parsed = parse(WorkerSolution, solution_frame(str(nonce)))
    assert parsed.solution["partial_solution"]["nonce"] == nonce
    assert type(parsed.solution["partial_solution"]["nonce"]) is int
    assert b'"nonce":%d' % nonce in orjson.dumps(parsed.solution)


@pytest.mark.parametrize("nonce", [MIN_INT - 1, MAX_INT + 1, -(2**70), 2**70, 10**300])
def test_integers_beyond_64_bits_are_refused_naming_the_field(nonce: int) -> None:
    # orjson would read each of these as a float.
    detail = refused(WorkerSolution, solution_frame(str(nonce)))
    assert detail == "solution.partial_solution.nonce: integer larger than 64 bits"


def test_integers_beyond_a_double_are_not_json_to_orjson() -> None:
    detail = refused(WorkerSolution, solution_frame("9" * 400))
    assert detail.startswith("not valid JSON: number is infinity")


def test_an_integer_that_became_a_float_is_found_in_arrays_and_challenges() -> None:
    detail = refused(NodeJob, job_frame('{"a": [1, {"b": [0, 18446744073709551616]}]}'))
    assert detail == "epoch_challenge.a.1.b.1: integer larger than 64 bits"


@pytest.mark.parametrize("number", ["1e19", "-9.3e18", "1.8446744073709552e+19", "1e300", "0.5"])
def test_float_literals_are_floats_as_sent(number: str) -> None:
    # Large floats send us to the slow check; a real float literal passes it.
    job = parse(NodeJob, job_frame('{"x": ' + number + "}"))
    assert job.epoch_challenge == {"x": float(number)}


@pytest.mark.parametrize(
    ("challenge", "detail"),
    [
        ('{"x": 1, "x": 2}', 'epoch_challenge: duplicate key "x"'),
        ('{"a": {"b": {"x": 1, "y": 0, "x": 1}}}', 'epoch_challenge.a.b: duplicate key "x"'),
        ('{"a": [{"k": 1}, {"k": 2, "k": 3}]}', 'epoch_challenge.a.1: duplicate key "k"'),
        # The same key spelled two ways is still the same key.
        ('{"a": 1, "\\u0061": 2}', 'epoch_challenge: duplicate key "a"'),
    ],
)
def test_duplicate_keys_at_any_depth_are_refused_naming_the_object(
    challenge: str, detail: str
) -> None:
    assert refused(NodeJob, job_frame(challenge)) == detail


def test_duplicate_keys_outside_the_objects_are_refused_too() -> None:
    data = b'{"epoch_challenge": {}, "proof_target": 1, "proof_target": 2, "block_height": 2}'
    assert refused(NodeJob, data) == 'duplicate key "proof_target"'


def test_internal_bodies_take_the_same_path() -> None:
    data = b'{"epoch_challenge": {"x": 1, "x": 2}, "proof_target": 1, "block_height": 2}'
    assert refused(JobMessage, data) == 'epoch_challenge: duplicate key "x"'


@pytest.mark.parametrize(
    "challenge",
    [
        '{"url": "http://a:b", "time": "12:00:01"}',  # colons in strings
        '{"url": "http\\u003a//a", "k\\u003a": 1}',  # escaped ones: the slow path
        '{"a": {"x": 1}, "b": {"x": 1}}',  # the same key in different objects
    ],
)
def test_lookalikes_of_duplicates_are_accepted(challenge: str) -> None:
    assert parse(NodeJob, job_frame(challenge)).epoch_challenge == orjson.loads(challenge)


def test_deep_frames_on_the_slow_path_are_checked_or_refused_not_a_crash() -> None:
    def frame(depth: int) -> bytes:
        # An escaped colon is what still sends a frame to the slow path.
        return job_frame('{"s": "\\u003a"}, "pad": ' + "[" * depth + "]" * depth)

    assert parse(NodeJob, frame(500)).epoch_challenge == {"s": ":"}
    assert refused(NodeJob, frame(1020)) == "nested too deeply"


def test_text_frames_are_checked_like_binary_ones() -> None:
    data = job_frame('{"x": 1, "x": 2}').decode()
    assert refused(NodeJob, data.encode()) == refused(NodeJob, data)


def test_changed_is_none_for_what_orjson_reads_exactly() -> None:
    data = b'{"a": [1, -2, 3.5, "x:y", {"b": null}], "c": 18446744073709551615}'
    assert changed(data, orjson.loads(data)) is None
    assert changed(data.decode(), orjson.loads(data)) is None


def test_colons_in_strings_are_proven_unchanged_without_a_second_reading() -> None:
    # A worker's largest frame, every string a colon: counting proves it, once.
    solution = {"partial_solution": {"nonce": "1:2"}}
    solution.update({f"k:{index}": "a:b:" for index in range(600)})
    frame = {"type": "solution", "task_id": TASK, "solution": solution, "solution_target": 1}
    data = orjson.dumps(frame)
    assert unchanged_for_sure(data, orjson.loads(data))
    assert unchanged_for_sure(data.decode(), orjson.loads(data))
    assert parse(WorkerSolution, data).solution == solution


@pytest.mark.parametrize(
    ("challenge", "key"),
    [
        ('{"a": ":", "a": 1}', "a"),  # the value dropped held a colon
        ('{"a": 1, "a": ":"}', "a"),  # the value kept does
        ('{"a:b": 1, "a:b": 2}', "a:b"),  # so does the key
        ('{"x": "\\u003a", "a": 1, "a": 1}', "a"),  # an escaped colon makes up for the key
        ('{"x": "\\u003A", "a": 1, "a": 1}', "a"),
    ],
)
def test_duplicates_next_to_colons_are_still_refused(challenge: str, key: str) -> None:
    data = job_frame(challenge)
    assert not unchanged_for_sure(data, orjson.loads(data))
    assert refused(NodeJob, data) == f'epoch_challenge: duplicate key "{key}"'
