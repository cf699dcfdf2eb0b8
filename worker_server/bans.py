"""Temporary bans of workers that keep sending bad solutions, and of addresses.

A worker is judged by its identity (the welcome's `hardware_id`), never by
its address alone: whole farms share one NAT address, and address bans for
one broken rig have "killed whole mining farms" (miningcore issue #397). An
address is banned only for what has no identity — welcomes that keep failing
from it — or once `ban_ip_after_identities` identities from it are banned at
the same time (one client making up identities to dodge its ban).

Bans live in memory, where each check is a dict lookup without an await (the
address check runs before the websocket upgrade). Enforced bans are also
stored in Postgres (`worker_ban`) so every instance refuses them: identities
are looked up at their welcome, addresses read every `ban_refresh_seconds`.
In `dry_run` the same bans are kept, logged (`would_ban`) and counted, but
never enforced, so an operator can see what a setting would do first.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.metrics import ACTIVE_BANS, BANS
from worker_server.judge import Judge
from worker_server.settings import WorkerServerSettings

IDENTITY, IP = "identity", "ip"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ban:
    kind: str  # IDENTITY or IP
    key: str  # a hardware_id or an address
    until: float  # on the clock of `Bans` (monotonic)
    reason: str  # "banned for 600 s: 87% of 40 solutions bad in 60 s"
    remote: str | None = None  # the address an identity was banned from

    def seconds_left(self, now: float) -> int:
        return max(1, math.ceil(self.until - now))


class Bans:
    """The bans one worker_server knows: its own verdicts and those other instances stored."""

    def __init__(
        self, settings: WorkerServerSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.mode = settings.ban_mode
        self.seconds = settings.ban_seconds
        self.ip_after_identities = settings.ban_ip_after_identities
        self.clock = clock
        judge = functools.partial(
            Judge,
            settings.ban_window_seconds,
            settings.ban_min_bad,
            settings.ban_bad_ratio,
            clock=clock,
        )
        self.solutions = judge(what="solutions")  # keyed by identity
        self.welcomes = judge(what="welcomes")  # keyed by address
        self.known: dict[tuple[str, str], Ban] = {}
        if self.mode != "off":  # exported at 0, so an alert on increase() sees the first one
            for kind in (IDENTITY, IP):
                BANS.labels(key=kind, mode=self.mode)

    @property
    def enforcing(self) -> bool:
        return self.mode == "enforce"

    def enforced(self, kind: str, key: str) -> Ban | None:
        """The ban in force on `key`, or None (always None unless enforcing)."""
        return self._active(kind, key) if self.enforcing else None

    def seconds_left(self, ban: Ban) -> int:
        return ban.seconds_left(self.clock())

    def judge_solution(self, identity: str, remote: str, bad: bool) -> list[Ban]:
        """Count a solution (or refused frame) of `identity`; the bans that follow."""
        if self.mode == "off" or self._active(IDENTITY, identity) is not None:
            return []
        verdict = self.solutions.record(identity, bad)
        if verdict is None:
            return []
        bans = [self._impose(IDENTITY, identity, str(verdict), remote)]
        if (address_ban := self._escalate(remote)) is not None:
            bans.append(address_ban)
        return bans

    def judge_welcome(self, remote: str, bad: bool) -> list[Ban]:
        """Count a welcome from `remote`, valid or not (missing, invalid); the bans that follow."""
        if self.mode == "off" or self._active(IP, remote) is not None:
            return []
        verdict = self.welcomes.record(remote, bad)
        return [] if verdict is None else [self._impose(IP, remote, str(verdict))]

    def learn(self, kind: str, key: str, seconds_left: float, reason: str) -> Ban:
        """A ban another instance stored (or this one, read back); the longer one wins."""
        ban = Ban(kind, key, self.clock() + seconds_left, reason)
        current = self._active(kind, key)
        if current is None or current.until < ban.until:
            self.known[(kind, key)] = ban
            self._gauge()
            return ban
        return current

    def sweep(self) -> None:
        """Forget expired bans and idle windows (run periodically)."""
        now = self.clock()
        for key in [k for k, ban in self.known.items() if ban.until <= now]:
            del self.known[key]
        self.solutions.forget_idle()
        self.welcomes.forget_idle()
        self._gauge()

    def _active(self, kind: str, key: str) -> Ban | None:
        ban = self.known.get((kind, key))
        return ban if ban is not None and ban.until > self.clock() else None

    def _escalate(self, remote: str) -> Ban | None:
        if not self.ip_after_identities or self._active(IP, remote) is not None:
            return None
        now = self.clock()
        banned = sum(
            1
            for ban in self.known.values()
            if ban.kind == IDENTITY and ban.remote == remote and ban.until > now
        )
        if banned < self.ip_after_identities:
            return None
        return self._impose(IP, remote, f"{banned} worker identities from this address banned")

    def _impose(self, kind: str, key: str, why: str, remote: str | None = None) -> Ban:
        reason = f"banned for {self.seconds:g} s: {why}"
        ban = Ban(kind, key, self.clock() + self.seconds, reason, remote)
        self.known[(kind, key)] = ban
        BANS.labels(key=kind, mode=self.mode).inc()
        log.warning(
            "banned" if self.enforcing else "would_ban",
            extra={"ban_key": kind, "banned": key, "remote": remote or key, "reason": reason},
        )
        self._gauge()
        return ban

    def _gauge(self) -> None:
        if not self.enforcing:  # would-be bans are not in force
            return
        kinds = collections.Counter(kind for kind, _ in self.known)
        for kind in (IDENTITY, IP):
            ACTIVE_BANS.labels(key=kind).set(kinds[kind])
