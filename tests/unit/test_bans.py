"""The ban judge: the bad share over a time window, of an identity where it offended
and of an address block."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from worker_server.bans import EVERYWHERE, IDENTITY, IP, Ban, Bans
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
    return WorkerServerSettings(
        **{"ban_min_bad": 3, "ban_address_min_bad": 6, "ban_seconds": 600, **overrides}
    )


def bans_count(kind: str, mode: str) -> float:
    return REGISTRY.get_sample_value("wspool_bans_total", {"key": kind, "mode": mode}) or 0.0


def bad(bans: Bans, identity: str, block: str, times: int, proven: bool = False) -> list[Ban]:
    return [b for _ in range(times) for b in bans.judge_frame(identity, block, proven, True)]


NAT, ELSEWHERE = "198.51.100.0/24", "203.0.113.0/24"


def test_an_unproven_identity_is_banned_only_in_the_block_it_offended_from() -> None:
    clock = Clock()
    bans = Bans(settings(), clock=clock)
    [ban] = bad(bans, "gpu-0", NAT, 3)
    assert (ban.kind, ban.key, ban.scope) == (IDENTITY, "gpu-0", NAT)
    assert ban.reason.startswith("banned for 600 s: 100% of 3 solutions")
    assert bans.identity_ban("gpu-0", NAT) == ban
    assert bans.identity_ban("gpu-0", ELSEWHERE) is None, "the same id from elsewhere"
    assert bans.address_ban(NAT) is None, "one identity never bans its block"
    clock.now += 600
    assert bans.identity_ban("gpu-0", NAT) is None, "bans end"
    bans.sweep()
    assert bans.known == {}


def test_a_proven_identity_is_banned_everywhere_for_every_claim_of_it() -> None:
    bans = Bans(settings())
    [ban] = bad(bans, "gpu-1", NAT, 3, proven=True)
    assert ban.scope == EVERYWHERE
    assert bans.identity_ban("gpu-1", ELSEWHERE) == ban
    assert bad(bans, "gpu-1", ELSEWHERE, 3) == [], "an unproven claim of it is not judged again"


def test_a_block_is_judged_by_all_its_frames_whichever_identities_sent_them() -> None:
    bans = Bans(settings())
    # Two bad frames each under three made-up identities: none banned, the block is.
    new = [b for who in ("a", "b", "c") for b in bad(bans, who, NAT, 2)]
    assert [(b.kind, b.key) for b in new] == [(IP, NAT)]
    assert bans.address_ban(NAT).reason == (  # type: ignore[union-attr]
        "banned for 600 s: 100% of 6 frames bad in 60 s"
    )
    # One broken rig among good ones: banned itself, its block never.
    for rig in range(20):
        assert bans.judge_welcome(ELSEWHERE, bad=False) == []
        assert bans.judge_frame(f"rig-{rig}", ELSEWHERE, False, False) == []
    assert [b.kind for b in bad(bans, "broken", ELSEWHERE, 10)] == [IDENTITY]
    assert bans.address_ban(ELSEWHERE) is None


def test_invalid_welcomes_ban_a_block_only_when_they_are_most_of_its_frames() -> None:
    bans = Bans(settings())
    for _ in range(10):
        assert bans.judge_welcome(ELSEWHERE, bad=False) == []
    assert [bans.judge_welcome(ELSEWHERE, bad=True) for _ in range(6)] == [[]] * 6
    [ban] = [b for _ in range(6) for b in bans.judge_welcome(NAT, bad=True)]
    assert (ban.kind, ban.key, ban.scope) == (IP, NAT, EVERYWHERE)


def test_a_block_is_banned_once_many_of_its_identities_are() -> None:
    bans = Bans(settings(ban_ip_after_identities=2, ban_address_min_bad=1000))
    assert [b.kind for b in bad(bans, "gpu-1", NAT, 3)] == [IDENTITY]
    assert [b.kind for b in bad(bans, "gpu-2", NAT, 3)] == [IDENTITY, IP]
    assert bans.address_ban(NAT).reason.endswith(  # type: ignore[union-attr]
        "2 worker identities from this address banned"
    )


def test_dry_run_logs_and_counts_but_never_enforces_and_off_does_nothing() -> None:
    before = bans_count(IDENTITY, "dry_run"), bans_count(IDENTITY, "enforce")
    dry, off = Bans(settings(ban_mode="dry_run")), Bans(settings(ban_mode="off"))
    enforce = Bans(settings())
    for registry in (dry, off, enforce):
        bad(registry, "gpu-x", NAT, 3)
    assert dry.identity_ban("gpu-x", NAT) is None and (IDENTITY, "gpu-x", NAT) in dry.known
    assert off.known == {}
    assert enforce.identity_ban("gpu-x", NAT) is not None, "control"
    after = bans_count(IDENTITY, "dry_run"), bans_count(IDENTITY, "enforce")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


def test_bans_stored_elsewhere_are_learned_with_their_scope_and_the_longer_one_wins() -> None:
    clock = Clock()
    bans = Bans(settings(), clock=clock)
    ban = bans.learn(IP, NAT, EVERYWHERE, 30.2, "banned for 600 s: elsewhere")
    assert bans.address_ban(NAT) == ban and bans.seconds_left(ban) == 31
    assert bans.learn(IP, NAT, EVERYWHERE, 10, "shorter") == ban
    scoped = bans.learn(IDENTITY, "gpu-3", NAT, 60, "scoped")
    assert bans.identity_ban("gpu-3", NAT) == scoped
    assert bans.identity_ban("gpu-3", ELSEWHERE) is None


def test_limits_memory_is_bounded_oldest_first() -> None:
    recent, counts = RecentlySent(capacity=2), TaskCounts(capacity=2)
    for key in ("a", "b", "c"):
        recent.add((None, key))  # type: ignore[arg-type]
        counts.add(key, None)  # type: ignore[arg-type]
    assert (None, "a") not in recent and (None, "c") in recent
    assert (counts.get("a", None), counts.get("c", None)) == (0, 1)  # type: ignore[arg-type]
