"""Without node tokens, the node side answers this machine only (issue #19).

A peer from elsewhere needs an address of this machine that is not loopback:
the servers listen on it, and a client connecting to it comes from it.
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest

from shared.metrics import REFUSED_CONNECTIONS
from tests.support import clients
from tests.support.stack import StartServers

TOKEN = "n0de-t0ken"


def own_address() -> str | None:
    """An address of this machine that is not loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: picks the source address, sends nothing
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


ADDRESS = own_address()
needs_address = pytest.mark.skipif(ADDRESS is None, reason="no address besides loopback")


def refused_forbidden() -> float:
    return REFUSED_CONNECTIONS.labels(role="node", reason="forbidden")._value.get()


@needs_address
async def test_without_tokens_a_node_from_elsewhere_is_refused_403_before_the_upgrade(
    start_servers: StartServers,
) -> None:
    async with start_servers(host=ADDRESS) as servers, aiohttp.ClientSession() as session:
        before = refused_forbidden()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(servers.node_url.replace("127.0.0.1", str(ADDRESS)))
        assert refused.value.status == 403
        assert refused_forbidden() - before == 1
        async with session.get(servers.node_url.replace("127.0.0.1", str(ADDRESS))) as reply:
            assert reply.status == 403
            body = await reply.json()
        assert body == {
            "error": "forbidden",
            "detail": "set auth_tokens to let nodes connect from other machines",
        }
        job = clients.job(clients.next_height())
        async with session.post(f"{servers.node_http}/api/jobs", json=job) as reply:
            assert reply.status == 403
            assert (await reply.json())["error"] == "forbidden"


@needs_address
async def test_with_tokens_a_node_from_elsewhere_is_served(start_servers: StartServers) -> None:
    """The positive control: the same peer, with a token, gets in on both paths."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        start_servers(host=ADDRESS, node={"auth_tokens": TOKEN}) as servers,
        aiohttp.ClientSession() as session,
    ):
        url = servers.node_url.replace("127.0.0.1", str(ADDRESS))
        async with clients.node_client(url, headers=bearer) as node:
            await node.send(b"{}")  # answered: the connection is really served
            assert (await node.receive())["code"] == "invalid_message"
        job = clients.job(clients.next_height())
        async with session.post(f"{servers.node_http}/api/jobs", json=job, headers=bearer) as reply:
            assert reply.status == 202


async def test_without_tokens_a_node_on_this_machine_is_served(
    start_servers: StartServers,
) -> None:
    async with start_servers() as servers, aiohttp.ClientSession() as session:
        async with clients.node_client(servers.node_url) as node:
            await node.send(b"{}")
            assert (await node.receive())["code"] == "invalid_message"
        job = clients.job(clients.next_height())
        async with session.post(f"{servers.node_http}/api/jobs", json=job) as reply:
            assert reply.status == 202
