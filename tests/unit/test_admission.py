"""Addresses as blocks: caps and handshake rates count a /24 or a /64 as one."""

from __future__ import annotations

import contextlib
from typing import Any

from worker_server.admission import Admission, HandshakeRate, address_block
from worker_server.settings import WorkerServerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def block(remote: str, **prefixes: Any) -> str:
    return address_block(remote, WorkerServerSettings(**prefixes))


def test_an_address_counts_as_its_block() -> None:
    assert block("198.51.100.77") == "198.51.100.0/24"
    assert block("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert block("::ffff:198.51.100.77") == "198.51.100.0/24", "IPv4 mapped into IPv6"
    assert block("198.51.100.77", address_prefix_ipv4=32) == "198.51.100.77/32"
    assert block("unknown") == "unknown"


def test_every_address_of_a_64_shares_one_cap() -> None:
    admission = Admission(max_total=1000, max_per_block=2)
    admitted = 0
    with contextlib.ExitStack() as held:
        for host in range(1, 101):
            remote = block(f"2001:db8::{host:x}")
            if admission.refusal(remote) is None:
                held.enter_context(admission.holding(remote))
                admitted += 1
    assert admitted == 2
    assert admission.refusal(block("2001:db8:0:1::1")) is None, "the next /64 (control)"


def test_handshakes_refill_at_their_rate_and_full_buckets_are_forgotten() -> None:
    clock = Clock()
    rate = HandshakeRate(rate=2, burst=300, clock=clock)
    assert all(rate.take("farm") for _ in range(300)), "a farm reconnecting at once"
    assert not rate.take("farm")
    assert rate.retry_after("farm") == 1
    assert rate.take("other"), "another block has its own"
    clock.now += 0.5
    assert rate.take("farm") and not rate.take("farm")
    clock.now += 1000
    rate.sweep()
    assert rate.buckets == {}


def test_the_retry_after_stays_short_however_slow_the_rate() -> None:
    rate = HandshakeRate(rate=0.001, burst=1, clock=Clock())
    assert rate.take("farm") and not rate.take("farm")
    assert rate.retry_after("farm") == 5
