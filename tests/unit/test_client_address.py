"""Whom a forwarded header may name: the right-most hop that is not a trusted proxy."""

from __future__ import annotations

import ipaddress

import pytest

from shared.runtime.proxied import TrustedProxies, ip_address
from shared.websocket.client_address import client_address

TRUSTED = TrustedProxies(
    [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48")]
)
PROXY = "10.1.2.3"


@pytest.mark.parametrize(
    ("hops", "client"),
    [
        (["198.51.100.7"], "198.51.100.7"),
        # What the client wrote comes first; the proxy appended what it saw.
        (["1.1.1.1", "198.51.100.7"], "198.51.100.7"),
        (["1.1.1.1", "198.51.100.7", "10.9.9.9"], "198.51.100.7"),  # two of our proxies
        (["10.4.4.4", "10.9.9.9"], "10.4.4.4"),  # every hop ours: the left-most
        (["198.51.100.7:4711"], "198.51.100.7"),
        (["[2001:db8::7]:4711"], "2001:db8::7"),
        ([' "[2001:db8::7]" '], "2001:db8::7"),
        (["2001:db8::7"], "2001:db8::7"),
        (["::ffff:198.51.100.7"], "198.51.100.7"),
        (["2001:db8:ffff::1", "2001:0db8:0000::7"], "2001:db8::7"),  # canonical form
        (["garbage", "198.51.100.7"], "198.51.100.7"),  # left of the client: never read
        ([], PROXY),  # no header: the proxy's own request (a probe)
    ],
)
def test_a_trusted_peer_names_the_client(hops: list[str], client: str) -> None:
    assert client_address(PROXY, hops, TRUSTED) == client


@pytest.mark.parametrize(
    "hops",
    [
        ["unknown"],
        ["_hidden"],
        [""],  # "a,,b"
        ["198.51.100.7", ""],
        ["198.51.100.7", "10.9.9.9", "not an address"],
        ["[2001:db8::7"],
        ["198.51.100.999"],
    ],
)
def test_an_unreadable_hop_leaves_the_peer(hops: list[str]) -> None:
    assert client_address(PROXY, hops, TRUSTED) == PROXY


@pytest.mark.parametrize("peer", ["198.51.100.9", "127.0.0.1", None, "unix-socket"])
def test_an_untrusted_peer_is_the_client_whatever_it_says(peer: str | None) -> None:
    assert client_address(peer, ["1.2.3.4"], TRUSTED) == peer


def test_nobody_is_trusted_by_default() -> None:
    assert client_address("10.1.2.3", ["1.2.3.4"], TrustedProxies([])) == "10.1.2.3"


def test_ipv4_mapped_peers_are_their_ipv4_address() -> None:
    assert ip_address("::ffff:10.1.2.3") == ipaddress.ip_address("10.1.2.3")
    assert TRUSTED.trusts("::ffff:10.1.2.3")
    assert client_address("::ffff:10.1.2.3", ["198.51.100.7"], TRUSTED) == "198.51.100.7"
