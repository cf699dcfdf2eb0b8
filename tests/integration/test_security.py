"""Who gets in: token auth on both websocket servers (HTTP 401 before the upgrade)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from node_server.app import create_app as create_node_app
from node_server.settings import NodeServerSettings
from tests.support import clients
from tests.support.stack import Backends, Stack
from worker_server.app import create_app as create_worker_app
from worker_server.settings import WorkerServerSettings

TOKENS = "first-s3cret-token,second-s3cret-token"
RIGHT = "second-s3cret-token"


@pytest.fixture(scope="module")
async def guarded(start_servers) -> AsyncIterator[Stack]:
    async with start_servers(auth_tokens=TOKENS) as servers:
        yield servers


async def first_error(client: clients.Worker) -> dict[str, object]:
    """The next error frame, skipping the latest job a worker gets after its welcome."""
    while (frame := await client.receive()).get("type") != "error":
        pass
    return frame


def _urls(stack: Stack) -> dict[str, str]:
    return {"node": stack.node_url, "worker": stack.worker_url}


@pytest.mark.parametrize("role", ["node", "worker"])
@pytest.mark.parametrize(
    "offer",
    [
        {},
        {"headers": {"Authorization": "Bearer wrong-token"}},
        {"headers": {"Authorization": f"Basic {RIGHT}"}},
        {"headers": {"Authorization": "Bearer "}},
        {"query": "?token=wrong-token"},
        {"query": f"?token={RIGHT[:-1]}"},
    ],
    ids=["none", "wrong-bearer", "basic-scheme", "empty-bearer", "wrong-query", "prefix-query"],
)
async def test_missing_or_wrong_token_is_refused_with_401_json(
    guarded: Stack, role: str, offer: dict[str, object]
) -> None:
    url = _urls(guarded)[role] + str(offer.get("query", ""))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, headers=offer.get("headers"))
        async with session.get(url, headers=offer.get("headers")) as response:
            body = await response.json()
            challenge = response.headers.get("WWW-Authenticate")
    assert refused.value.status == 401
    assert response.status == 401
    assert body["error"] == "unauthorized" and body["detail"]
    assert challenge == "Bearer"


@pytest.mark.parametrize("role", ["node", "worker"])
@pytest.mark.parametrize("how", ["header", "query", "lowercase-scheme"])
async def test_right_token_is_accepted(guarded: Stack, role: str, how: str) -> None:
    url = _urls(guarded)[role]
    kwargs: dict[str, object] = {}
    if how == "header":
        kwargs["headers"] = {"Authorization": f"Bearer {RIGHT}"}
    elif how == "lowercase-scheme":
        kwargs["headers"] = {"Authorization": "bearer first-s3cret-token"}
    else:
        url += f"?token={RIGHT}"
    async with clients.connect(url, **kwargs) as ws:
        client = clients.Worker(ws)
        if role == "worker":
            await client.send(clients.welcome())
        await client.send(b"{}")  # answered, so the connection is really served
        assert (await first_error(client))["code"] == "invalid_message"


async def test_non_utf8_authorization_header_is_a_401_not_a_crash(guarded: Stack) -> None:
    host, port = guarded.worker_address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3(\r\n"
            b"Connection: close\r\n\r\n"
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status_line.split()[1] == b"401"


@pytest.mark.parametrize(
    ("create_app", "settings_class", "warning"),
    [
        (create_node_app, NodeServerSettings, "nodes_loopback_only"),
        (create_worker_app, WorkerServerSettings, "auth_disabled"),
    ],
    ids=["node", "worker"],
)
def test_start_up_warns_when_no_tokens_are_set(
    backends: Backends,
    caplog: pytest.LogCaptureFixture,
    create_app: Any,
    settings_class: Any,
    warning: str,
) -> None:
    """Workers are open without tokens; nodes answer this machine only (issue #19)."""
    with caplog.at_level(logging.WARNING):
        create_app(settings_class(**backends.settings()))
        create_app(settings_class(**backends.settings(auth_tokens="t")))
    warnings = [r for r in caplog.records if r.getMessage() == warning]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    if create_app is create_node_app:
        assert not [r for r in caplog.records if r.getMessage() == "auth_disabled"]


@pytest.mark.parametrize("role", ["node", "worker"])
async def test_a_web_pages_origin_is_refused_with_403_json(guarded: Stack, role: str) -> None:
    """Any page a browser opens could be a node or a worker: refused before the upgrade."""
    url, auth = _urls(guarded)[role], {"Authorization": f"Bearer {RIGHT}"}
    async with aiohttp.ClientSession() as session:
        for origin in ("http://evil.example", "null", _urls(guarded)[role].replace("ws", "http")):
            headers = {**auth, "Origin": origin}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers=headers)
            assert refused.value.status == 403, origin
            async with session.get(url, headers=headers) as response:
                assert response.status == 403
                assert (await response.json())["error"] == "forbidden_origin"
    # The control: the same handshake without an Origin (not a browser) is served.
    async with clients.connect(url, headers=auth) as ws:
        assert not ws.closed


@pytest.mark.parametrize("role", ["node", "worker"])
async def test_an_allowed_origin_is_served(start_servers, role: str) -> None:
    async with start_servers(allowed_origins="https://pool.example") as stack:
        url = _urls(stack)[role]
        async with clients.connect(url, headers={"Origin": "https://Pool.example"}) as ws:
            assert not ws.closed
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url, headers={"Origin": "https://other.example"})
        assert refused.value.status == 403
