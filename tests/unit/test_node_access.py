"""The `node` access level: loopback peers only without node tokens, the token with them."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from node_server.access import guarded
from node_server.settings import NodeServerSettings
from node_server.ws import SETTINGS


async def ok(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def request(auth_tokens: str | None, remote: str, token: str | None = None) -> web.Request:
    app = web.Application()
    app[SETTINGS] = NodeServerSettings(**({"auth_tokens": auth_tokens} if auth_tokens else {}))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return make_mocked_request("POST", "/api/jobs", headers=headers, app=app).clone(remote=remote)


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.3.4.5", "::1"])
async def test_loopback_peers_are_served_without_tokens(remote: str) -> None:
    assert (await guarded("node", ok)(request(None, remote))).status == 200


@pytest.mark.parametrize("remote", ["203.0.113.7", "2001:db8::1", "10.0.0.2", ""])
async def test_other_peers_are_refused_403_without_tokens(remote: str) -> None:
    answer = await guarded("node", ok)(request(None, remote))
    assert answer.status == 403


@pytest.mark.parametrize("remote", ["127.0.0.1", "203.0.113.7"])
async def test_with_tokens_every_peer_needs_one(remote: str) -> None:
    assert (await guarded("node", ok)(request("n0de", remote, "n0de"))).status == 200
    assert (await guarded("node", ok)(request("n0de", remote))).status == 401
    assert (await guarded("node", ok)(request("n0de", remote, "wrong"))).status == 401
