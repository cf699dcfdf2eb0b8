"""The ban judge: the bad share over a time window, by identity before address."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from worker_server.bans import IDENTITY, IP, Bans
from worker_server.judge import Judge
from worker_server.limits import RecentlySent, TaskCounts
from worker_server.settings import WorkerServerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def judge(clock: Clock, min_bad: int = 5, ratio: float = 0.5) -> Judge:
    return Judge(60, min_bad, ratio, what="solutions", clock=clock)


def send(judge: Judge, key: str, good: int = 0, bad: int = 0) -> list[Any]:
    verdicts = [judge.record(key, bad=False) for _ in range(good)]
    verdicts += [judge.record(key, bad=True) for _ in range(bad)]
    return [v for v in verdicts if v is not None]


def test_enough_bad_at_a_high_share_is_a_verdict_with_its_counts() -> None:
    clock = Clock()
    j = judge(clock)
    assert send(j, "gpu", good=3, bad=4) == [], "4 bad are fewer than min_bad"
    [verdict] = send(j, "gpu", bad=1)
    assert (verdict.bad, verdict.total) == (5, 8)
    assert str(verdict) == "62% of 8 solutions bad in 60 s"


def test_a_low_bad_share_is_never_a_verdict_however_many_bad() -> None:
    clock = Clock()
    j = judge(clock)
    assert send(j, "gpu", good=100, bad=30) == []
    assert send(j, "busy", good=1, bad=5) != [], "control: the same bad count at a high share"


def test_the_share_is_over_the_time_window_not_the_last_n() -> None:
    clock = Clock()
    j = judge(clock)
    # Good solutions long ago do not cover for bad ones now...
    send(j, "gpu", good=1000)
    clock.now += 61
    assert send(j, "gpu", bad=5) != []
    # ...and bad ones spread thinner than the window never add up,
    for _ in range(20):
        assert send(j, "slow", good=1, bad=1) == []
        clock.now += 31
    # while the same sequence within one window does (control).
    verdicts = [send(j, "fast", good=1, bad=1) for _ in range(20)]
    assert any(verdicts)


def test_a_verdict_starts_the_key_afresh_and_idle_keys_are_forgotten() -> None:
    clock = Clock()
    j = judge(clock)
    assert send(j, "gpu", bad=5) != []
    assert send(j, "gpu", bad=4) == [], "counted from zero after the verdict"
    send(j, "quiet", good=1)
    clock.now += 30
    j.forget_idle()
    assert set(j.windows) == {"gpu", "quiet"}, "silent for less than a window"
    clock.now += 31
    send(j, "gpu", good=1)
    j.forget_idle()
    assert set(j.windows) == {"gpu"}


def settings(**overrides: Any) -> WorkerServerSettings:
    return WorkerServerSettings(ban_min_bad=3, ban_seconds=600, **overrides)


def bans_count(kind: str, mode: str) -> float:
    return REGISTRY.get_sample_value("wspool_bans_total", {"key": kind, "mode": mode}) or 0.0


def test_an_identity_is_banned_not_its_address_until_many_of_its_identities_are() -> None:
    clock = Clock()
    bans = Bans(settings(ban_ip_after_identities=2), clock=clock)
    [first] = [b for _ in range(3) for b in bans.judge_solution("gpu-1", "198.51.100.1", True)]
    assert first.kind == IDENTITY and first.reason.startswith("banned for 600 s: 100% of 3")
    assert bans.enforced(IDENTITY, "gpu-1") == first
    assert bans.enforced(IP, "198.51.100.1") is None, "one identity never bans its address"
    assert bans.enforced(IDENTITY, "gpu-2") is None
    new = [b for _ in range(3) for b in bans.judge_solution("gpu-2", "198.51.100.1", True)]
    assert [b.kind for b in new] == [IDENTITY, IP]
    assert bans.enforced(IP, "198.51.100.1").reason.endswith(  # type: ignore[union-attr]
        "2 worker identities from this address banned"
    )
    clock.now += 600
    assert bans.enforced(IDENTITY, "gpu-1") is None, "bans end"
    bans.sweep()
    assert bans.known == {}


def test_failing_welcomes_ban_an_address_only_when_they_are_most_of_its_welcomes() -> None:
    bans = Bans(settings(), clock=Clock())
    for _ in range(10):
        assert bans.judge_welcome("203.0.113.9", bad=False) == []
    assert [bans.judge_welcome("203.0.113.9", bad=True) for _ in range(5)] == [[]] * 5
    [ban] = [b for _ in range(3) for b in bans.judge_welcome("198.51.100.7", bad=True)]
    assert (ban.kind, ban.key) == (IP, "198.51.100.7")
    assert ban.reason == "banned for 600 s: 100% of 3 welcomes bad in 60 s"


def test_dry_run_logs_and_counts_but_never_enforces_and_off_does_nothing() -> None:
    before = bans_count(IDENTITY, "dry_run"), bans_count(IDENTITY, "enforce")
    dry, off = Bans(settings(ban_mode="dry_run")), Bans(settings(ban_mode="off"))
    enforce = Bans(settings())
    for registry in (dry, off, enforce):
        for _ in range(3):
            registry.judge_solution("gpu-x", "192.0.2.1", True)
    assert dry.enforced(IDENTITY, "gpu-x") is None and (IDENTITY, "gpu-x") in dry.known
    assert off.known == {}
    assert enforce.enforced(IDENTITY, "gpu-x") is not None, "control"
    after = bans_count(IDENTITY, "dry_run"), bans_count(IDENTITY, "enforce")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_bans_stored_elsewhere_are_learned_and_the_longer_one_wins() -> None:
    clock = Clock()
    bans = Bans(settings(), clock=clock)
    ban = bans.learn(IP, "192.0.2.5", 30.2, "banned for 600 s: elsewhere")
    assert bans.enforced(IP, "192.0.2.5") == ban and bans.seconds_left(ban) == 31
    assert bans.learn(IP, "192.0.2.5", 10, "shorter") == ban


def test_limits_memory_is_bounded_oldest_first() -> None:
    recent, counts = RecentlySent(capacity=2), TaskCounts(capacity=2)
    for key in ("a", "b", "c"):
        recent.add((None, key))  # type: ignore[arg-type]
        counts.add(key, None)  # type: ignore[arg-type]
    assert (None, "a") not in recent and (None, "c") in recent
    assert (counts.get("a", None), counts.get("c", None)) == (0, 1)  # type: ignore[arg-type]
