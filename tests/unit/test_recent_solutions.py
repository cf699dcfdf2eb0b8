"""The recovery window: recent solutions per height, bounded in count and age."""

from __future__ import annotations

import uuid

from node_server.recovery import RecoveryWindow
from node_server.solutions import SolutionUpdate
from shared.metrics import RECOVERY_WINDOW
from shared.protocol import now_ns


def found(height: int, nonce: int, age_seconds: float = 0.0) -> SolutionUpdate:
    received_at = now_ns() - int(age_seconds * 1e9)
    return SolutionUpdate(height, 1, (uuid.UUID(int=height), str(nonce)), b"{}", received_at)


def test_each_height_keeps_its_newest_solutions_up_to_the_bound() -> None:
    window = RecoveryWindow(per_height=3, wait_seconds=60)
    for n in range(5):
        window.offer(found(10, n))
    window.offer(found(11, 0))
    assert [u.key[1] for u in window.at(10)] == ["4", "3", "2"]
    assert [u.key[1] for u in window.at(11)] == ["0"]
    assert window.at(12) == []
    assert RECOVERY_WINDOW._value.get() == 4


def test_solutions_older_than_the_wait_time_are_left_out_and_pruned() -> None:
    window = RecoveryWindow(per_height=10, wait_seconds=60)
    window.offer(found(10, 0, age_seconds=120))
    window.offer(found(10, 1))
    window.offer(found(9, 0, age_seconds=120))  # a height whose newest is stale
    assert [u.key[1] for u in window.at(10)] == ["1"]
    assert window.at(9) == []
    window._pruned_at = 0  # the next offer prunes (it does at most once a second)
    window.offer(found(12, 0))
    assert RECOVERY_WINDOW._value.get() == 2  # height 9 pruned: 10 and 12 hold one each


def test_the_window_holds_a_bounded_number_over_all_heights_oldest_dropped_first() -> None:
    window = RecoveryWindow(per_height=10, wait_seconds=60, max_solutions=5)
    for height in (10, 11, 12):  # a new job every few seconds, shares for each
        for n in range(3):
            window.offer(found(height, n))
    assert len(window) == 5 and RECOVERY_WINDOW._value.get() == 5
    assert window.at(10) == []
    assert [u.key[1] for u in window.at(11)] == ["2", "1"]  # newest first
    assert [u.key[1] for u in window.at(12)] == ["2", "1", "0"]
