"""Temporary bans of workers that keep sending bad frames, and of address blocks.

A worker's identity is the welcome's `hardware_id`, a claim anyone can make
for any worker. So a ban on it holds where the offence came from: that
identity from that address block (`worker_server.admission.address_block`).
Only an identity the worker proved (`worker_server.identity`) is banned
everywhere, and then every claim of it is refused, proven or not, so a
banned worker can't shed its ban by dropping its token.

An address block is judged by the share of bad frames among all its frames
in the window (welcomes and solutions, whichever identities sent them), with
a higher count (`ban_address_min_bad`): made-up identities do not spread the
bad ones thin, and one broken rig behind a farm's NAT, banned by itself,
does not take the farm's good frames with it (miningcore issue #397). A
connection that ends before its welcome is no offence, an invalid welcome is.
A block is also banned once `ban_ip_after_identities` identities from it are.

Bans live in memory, where each check is a dict lookup without an await.
Enforced bans are also stored in Postgres (`worker_ban`, with the block an
identity's ban holds in) and read back by every instance at start-up and
every `ban_refresh_seconds`. In `dry_run` the same bans are kept, logged
(`would_ban`) and counted, but never enforced.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.metrics import ACTIVE_BANS, BANS
from worker_server.judge import Judge, Verdict
from worker_server.settings import WorkerServerSettings

IDENTITY, IP = "identity", "ip"
EVERYWHERE = ""  # the scope of a block's ban, and of a proven identity's
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ban:
    kind: str  # IDENTITY or IP
    key: str  # a hardware_id or an address block
    scope: str  # the block an identity's ban holds in, or EVERYWHERE
    until: float  # on the clock of `Bans` (monotonic)
    reason: str  # "banned for 600 s: 87% of 40 solutions bad in 60 s"
    origin: str | None = None  # the block the offence came from (this instance's bans)

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
        window, ratio = settings.ban_window_seconds, settings.ban_bad_ratio
        # Keyed by (identity, scope) and by block.
        self.identities = Judge(window, settings.ban_min_bad, ratio, "solutions", clock)
        self.blocks = Judge(window, settings.ban_address_min_bad, ratio, "frames", clock)
        self.known: dict[tuple[str, str, str], Ban] = {}
        self.loaded = False  # the bans stored in Postgres were read once
        if self.mode != "off":  # exported at 0, so an alert on increase() sees the first one
            for kind in (IDENTITY, IP):
                BANS.labels(key=kind, mode=self.mode)

    @property
    def enforcing(self) -> bool:
        return self.mode == "enforce"

    def identity_ban(self, identity: str, block: str) -> Ban | None:
        """The ban in force on `identity` claimed from `block`, or None (unless enforcing)."""
        if not self.enforcing:
            return None
        return self._active(IDENTITY, identity, EVERYWHERE) or self._active(
            IDENTITY, identity, block
        )

    def address_ban(self, block: str) -> Ban | None:
        """The ban in force on `block`, or None (always None unless enforcing)."""
        return self._active(IP, block, EVERYWHERE) if self.enforcing else None

    def seconds_left(self, ban: Ban) -> int:
        return ban.seconds_left(self.clock())

    def judge_frame(self, identity: str, block: str, proven: bool, bad: bool) -> list[Ban]:
        """Count a frame of a welcomed worker (a solution, or one refused); the bans that follow."""
        if self.mode == "off":
            return []
        scope = EVERYWHERE if proven else block
        bans = self._judge_block(block, bad)
        if self._active(IDENTITY, identity, EVERYWHERE) or self._active(IDENTITY, identity, scope):
            return bans
        verdict = self.identities.record((identity, scope), bad)
        if verdict is not None:
            bans.append(self._impose(IDENTITY, identity, scope, verdict, block))
            bans += self._escalate(block)
        return bans

    def judge_welcome(self, block: str, bad: bool) -> list[Ban]:
        """Count a welcome from `block`, valid or invalid; the bans that follow."""
        return [] if self.mode == "off" else self._judge_block(block, bad)

    def learn(self, kind: str, key: str, scope: str, seconds_left: float, reason: str) -> Ban:
        """A ban another instance stored (or this one, read back); the longer one wins."""
        ban = Ban(kind, key, scope, self.clock() + seconds_left, reason)
        current = self._active(kind, key, scope)
        if current is None or current.until < ban.until:
            self.known[(kind, key, scope)] = ban
            self._gauge()
            return ban
        return current

    def sweep(self) -> None:
        """Forget expired bans and idle windows (run periodically)."""
        now = self.clock()
        for key in [k for k, ban in self.known.items() if ban.until <= now]:
            del self.known[key]
        self.identities.forget_idle()
        self.blocks.forget_idle()
        self._gauge()

    def _active(self, kind: str, key: str, scope: str) -> Ban | None:
        ban = self.known.get((kind, key, scope))
        return ban if ban is not None and ban.until > self.clock() else None

    def _judge_block(self, block: str, bad: bool) -> list[Ban]:
        if self._active(IP, block, EVERYWHERE) is not None:
            return []
        verdict = self.blocks.record(block, bad)
        return [] if verdict is None else [self._impose(IP, block, EVERYWHERE, verdict)]

    def _escalate(self, block: str) -> list[Ban]:
        if not self.ip_after_identities or self._active(IP, block, EVERYWHERE) is not None:
            return []
        now = self.clock()
        banned = sum(
            1
            for ban in self.known.values()
            if ban.kind == IDENTITY and ban.origin == block and ban.until > now
        )
        if banned < self.ip_after_identities:
            return []
        why = f"{banned} worker identities from this address banned"
        return [self._impose(IP, block, EVERYWHERE, why)]

    def _impose(
        self, kind: str, key: str, scope: str, why: Verdict | str, origin: str | None = None
    ) -> Ban:
        reason = f"banned for {self.seconds:g} s: {why}"
        ban = Ban(kind, key, scope, self.clock() + self.seconds, reason, origin or key)
        self.known[(kind, key, scope)] = ban
        BANS.labels(key=kind, mode=self.mode).inc()
        log.warning(
            "banned" if self.enforcing else "would_ban",
            extra={
                "ban_key": kind,
                "banned": key,
                "scope": scope or "everywhere",
                "remote": ban.origin,
                "reason": reason,
            },
        )
        self._gauge()
        return ban

    def _gauge(self) -> None:
        if not self.enforcing:  # would-be bans are not in force
            return
        kinds = collections.Counter(kind for kind, _, _ in self.known)
        for kind in (IDENTITY, IP):
            ACTIVE_BANS.labels(key=kind).set(kinds[kind])
