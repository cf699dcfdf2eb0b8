"""The per-connection filters both fan-out modes share (a worker's: `CurrentJob`)."""

from __future__ import annotations

import uuid

from node_server.expectations import REPEAT_RECOVERY_SECONDS, NodeExpectations
from node_server.solutions import SolutionUpdate
from shared.metrics import EXPECTATIONS_EVICTED


def solution(height: int, target: int, nonce: str = "1") -> SolutionUpdate:
    return SolutionUpdate(height, target, (uuid.UUID(int=height), nonce), b"{}", 0)


def test_node_gets_solutions_for_its_height_at_or_above_its_target() -> None:
    node = NodeExpectations(wait_seconds=60)
    node.expect(10, 100, now=0)
    assert node.accept(solution(10, 100), now=1)
    assert node.accept(solution(10, 5000, nonce="2"), now=1)
    assert not node.accept(solution(10, 99, nonce="3"), now=1), "target too low"
    assert not node.accept(solution(11, 5000), now=1), "height never asked for"


def test_each_solution_reaches_a_node_at_most_once() -> None:
    node = NodeExpectations(wait_seconds=60)
    node.expect(10, 100, now=0)
    assert node.accept(solution(10, 100), now=1)
    assert not node.accept(solution(10, 100), now=2)


def test_expectations_expire_after_the_wait_time() -> None:
    node = NodeExpectations(wait_seconds=60)
    node.expect(10, 100, now=0)
    assert not node.accept(solution(10, 100), now=60)
    node.expect(11, 100, now=61)  # pruning on the way
    assert len(node) == 1


def test_the_lowest_live_target_of_a_height_counts() -> None:
    node = NodeExpectations(wait_seconds=60)
    node.expect(10, 1000, now=0)
    node.expect(10, 10, now=30)
    assert node.accept(solution(10, 50), now=70), "second job (target 10) still waiting"


def test_a_node_gets_only_solutions_for_the_challenge_it_sent() -> None:
    node = NodeExpectations(wait_seconds=60)
    node.expect(10, 100, challenge_digest="mine", now=0)

    def answering(digest: str | None, nonce: str) -> SolutionUpdate:
        return SolutionUpdate(10, 100, (uuid.UUID(int=10), nonce), b"{}", 0, digest)

    assert node.accept(answering("mine", "1"), now=1)
    assert not node.accept(answering("theirs", "2"), now=1), "another challenge's solution"
    assert node.accept(answering(None, "3"), now=1), "records from before digests match"


def test_expired_heights_leave_without_a_new_job() -> None:
    node = NodeExpectations(wait_seconds=60)
    node.expect(10, 100, now=0)
    assert len(node) == 1
    assert not node.accept(solution(11, 100), now=61)  # any solution looks at the clock
    assert len(node) == 0


def test_a_connection_waits_for_a_bounded_number_of_heights() -> None:
    node = NodeExpectations(wait_seconds=60, max_heights=3)
    evicted = EXPECTATIONS_EVICTED._value.get()
    for height in range(10, 15):
        node.expect(height, 100, now=0)
    assert len(node) == 3
    assert EXPECTATIONS_EVICTED._value.get() - evicted == 2
    assert not node.accept(solution(10, 100), now=1), "the oldest was evicted"
    assert node.accept(solution(14, 100), now=1)


def jobs_waited_for(node: NodeExpectations) -> int:
    return sum(len(expectation.jobs) for expectation in node._by_height.values())


def test_a_job_repeated_unchanged_is_renewed_not_added() -> None:
    """Issue #19: 300 repeats on one connection made 300 entries."""
    node = NodeExpectations(wait_seconds=60)
    for second in range(300):
        node.expect(10, 100, challenge_digest="mine", now=second * 0.1)
    assert jobs_waited_for(node) == 1
    assert node.waits_for(10, 100, "mine", now=30)
    assert node.accept(solution(10, 100), now=29.9 + 59), "the last repeat renewed the wait"


def test_another_target_or_challenge_is_another_job() -> None:
    node = NodeExpectations(wait_seconds=60)
    node.expect(10, 100, challenge_digest="mine", now=0)
    assert node.waits_for(10, 100, "mine", now=1)
    assert not node.waits_for(10, 50, "mine", now=1)
    assert not node.waits_for(10, 100, "theirs", now=1)
    assert not node.waits_for(11, 100, "mine", now=1)
    assert not node.waits_for(10, 100, "mine", now=60), "an expired job is new again"
    node.expect(10, 50, challenge_digest="mine", now=1)
    assert jobs_waited_for(node) == 2


def test_a_repeat_recovers_at_most_once_per_interval() -> None:
    node = NodeExpectations(wait_seconds=60)
    assert node.expect(10, 100, now=0), "a new job recovers"
    assert not node.expect(10, 100, now=0.5), "a repeat right after does not"
    assert node.expect(10, 100, now=0 + REPEAT_RECOVERY_SECONDS), "a later one does"
    assert not node.expect(10, 100, now=REPEAT_RECOVERY_SECONDS + 0.5)
    assert node.expect(10, 50, now=1.1), "another target is a new job"


def test_expired_jobs_leave_a_height_that_is_still_waited_for() -> None:
    node = NodeExpectations(wait_seconds=60)
    for second in range(100):  # a new target each time, each expiring in turn
        node.expect(10, 1000 - second, now=second * 10.0)
    assert jobs_waited_for(node) <= 6


def test_a_connection_remembers_a_bounded_number_of_delivered_solutions() -> None:
    node = NodeExpectations(wait_seconds=60, max_delivered=4)
    evicted = EXPECTATIONS_EVICTED._value.get()
    node.expect(10, 100, now=0)
    node.expect(11, 100, now=0)
    for nonce in "123":
        assert node.accept(solution(10, 100, nonce), now=1)
    assert node.accept(solution(11, 100), now=1)
    assert node.delivered == 4 and len(node) == 2  # at the bound: both heights kept
    assert node.accept(solution(11, 100, nonce="2"), now=1)
    assert node.delivered == 2 and len(node) == 1, "height 10 and its three keys forgotten"
    assert EXPECTATIONS_EVICTED._value.get() - evicted == 1
    assert not node.accept(solution(10, 100, nonce="4"), now=1), "no longer waited for"
    assert not node.accept(solution(11, 100, nonce="2"), now=1), "still at most once"


def test_a_job_sent_again_renews_its_wait_instead_of_adding_to_it() -> None:
    node = NodeExpectations(wait_seconds=60)
    for sent_at in range(100):  # a node that reconnects and re-sends its job, often
        node.expect(10, 100, "digest", now=sent_at)
    assert [job.expires for job in node._by_height[10].jobs] == [99 + 60]
    assert node.accept(solution(10, 100), now=150), "the newest send counts"


def test_a_connection_waits_on_a_bounded_number_of_jobs_per_height() -> None:
    node = NodeExpectations(wait_seconds=60, max_jobs_per_height=2)
    for target in (100, 200, 300, 400):  # a node that sends many targets at one height
        node.expect(10, target, now=0)
    assert [job.proof_target for job in node._by_height[10].jobs] == [300, 400]
    assert not node.accept(solution(10, 250), now=1), "the jobs at 100 and 200 dropped"
    assert node.accept(solution(10, 300), now=1)
