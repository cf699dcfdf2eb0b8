"""The parameter models read exactly the texts their JSON Schemas admit."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from node_server.params import (
    WINDOW,
    FleetParams,
    HeightSolutionsParams,
    TaskParams,
    WorkersParams,
    WorkerStatsParams,
    at_most,
)

TASK = "0b7e6a42-5b7e-4f6e-9c1a-3d2f1e0a9b8c"


def test_at_most_matches_one_to_n_and_nothing_else() -> None:
    for n in [*range(1, 1200), 2160, 129600, 7776000]:
        pattern = re.compile(f"(?:{at_most(n)})")
        edges = {0, 1, n - 1, n, n + 1, 10 ** len(str(n)), 10 ** (len(str(n)) - 1)}
        for number in edges | set(range(min(n * 2, 3000))):
            assert bool(pattern.fullmatch(str(number))) == (1 <= number <= n), (n, number)
        assert pattern.fullmatch(f"0{n}") is None  # leading zeros are the caller's `0*`


@pytest.mark.parametrize(
    ("window", "seconds"),
    [("1s", 1), ("90d", 90 * 86400), ("2160h", 90 * 86400), ("129600m", 90 * 86400), ("05m", 300)],
)
def test_windows_up_to_90_days_are_read_as_seconds(window: str, seconds: int) -> None:
    assert WINDOW.fullmatch(window)
    assert WorkerStatsParams(hardware_id="gpu", window=window).window == seconds


@pytest.mark.parametrize("window", ["0s", "91d", "2161h", "7776001s", "997683m", "", "1h\n", "1y"])
def test_other_windows_are_refused_by_the_pattern_and_the_model(window: str) -> None:
    assert WINDOW.fullmatch(window) is None
    with pytest.raises(ValidationError, match="from 1s to 90d"):
        WorkerStatsParams(hardware_id="gpu", window=window)


def test_an_absent_window_is_an_hour() -> None:
    assert WorkerStatsParams(hardware_id="gpu").window == 3600


@pytest.mark.parametrize("text", ["", " 5", "5 ", "5.0", "1_000", "\u0665", "0x10", "1e3"])
def test_integers_are_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValidationError, match="expected an integer"):
        HeightSolutionsParams(block_height=text)
    assert HeightSolutionsParams(block_height="5").block_height == 5  # the control


@pytest.mark.parametrize(
    "text", [TASK.replace("-", ""), "{" + TASK + "}", "urn:uuid:" + TASK, TASK + " "]
)
def test_task_ids_are_hyphenated_uuids_only(text: str) -> None:
    with pytest.raises(ValidationError, match="expected a UUID"):
        TaskParams(task_id=text)
    assert str(TaskParams(task_id=TASK.upper()).task_id) == TASK  # the control


def test_an_empty_value_is_not_an_absent_one() -> None:
    assert WorkersParams().connected is None
    with pytest.raises(ValidationError):
        WorkersParams(connected="")
    with pytest.raises(ValidationError):
        HeightSolutionsParams(block_height=1, challenge_digest="")
    assert FleetParams(q="").q == ""  # a text may be empty


def test_the_fleet_query_is_limited_before_it_is_stripped() -> None:
    assert FleetParams(q=" a ").q == "a"
    assert FleetParams(q="a" * 255).q == "a" * 255
    with pytest.raises(ValidationError):
        FleetParams(q=" " * 256)
