"""Without an admin token the read API and dashboard answer loopback peers only."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr

from node_server.access import guarded
from node_server.sessions import LoginAttempts
from node_server.settings import NodeServerSettings
from node_server.ws import SETTINGS
from shared.websocket.origin import host_allowed


async def ok(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def request(admin_token: str | None, remote: str, token: str | None = None) -> web.Request:
    app = web.Application()
    app[SETTINGS] = NodeServerSettings(
        admin_token=None if admin_token is None else SecretStr(admin_token)
    )
    headers = {"Host": f"127.0.0.1:{app[SETTINGS].internal_port}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return make_mocked_request("GET", "/api/stats", headers=headers, app=app).clone(remote=remote)


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.3.4.5", "::1"])
async def test_loopback_peers_are_served_without_a_token(remote: str) -> None:
    assert (await guarded("admin", ok)(request(None, remote))).status == 200


@pytest.mark.parametrize("remote", ["203.0.113.7", "2001:db8::1", ""])
async def test_other_peers_are_refused_without_a_token(remote: str) -> None:
    answer = await guarded("admin", ok)(request(None, remote))
    assert answer.status == 403


async def test_with_a_token_every_peer_needs_it() -> None:
    assert (await guarded("admin", ok)(request("adm1n", "203.0.113.7", "adm1n"))).status == 200
    assert (await guarded("admin", ok)(request("adm1n", "127.0.0.1"))).status == 401


@pytest.mark.parametrize("remote", ["127.0.0.1", "203.0.113.7"])
async def test_with_a_token_anyone_may_see_the_login(remote: str) -> None:
    assert (await guarded("login", ok)(request("adm1n", remote))).status == 200


async def test_without_a_token_the_login_page_is_loopback_only() -> None:
    assert (await guarded("login", ok)(request(None, "127.0.0.1"))).status == 200
    assert (await guarded("login", ok)(request(None, "203.0.113.7"))).status == 403


def test_wrong_logins_are_forgiven_once_a_minute_has_passed() -> None:
    now = [1000.0]
    attempts = LoginAttempts(clock=lambda: now[0])
    for _ in range(4):
        attempts.failed("203.0.113.7")
    assert attempts.retry_after("203.0.113.7") is None  # four are not too many
    attempts.failed("203.0.113.7")
    assert attempts.retry_after("203.0.113.7") == 60
    assert attempts.retry_after("203.0.113.8") is None  # another address
    now[0] += 59.5
    assert attempts.retry_after("203.0.113.7") == 1
    now[0] += 0.5
    assert attempts.retry_after("203.0.113.7") is None


def test_an_ipv6_host_is_counted_by_its_64() -> None:
    attempts = LoginAttempts(clock=lambda: 0.0)
    for suffix in range(5):
        attempts.failed(f"2001:db8:1:2::{suffix + 1}")
    assert attempts.retry_after("2001:db8:1:2::ffff") is not None
    assert attempts.retry_after("2001:db8:1:3::1") is None


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8021", True),
        ("LOCALHOST.", True),
        ("[::1]:8021", True),
        ("localhost.evil.example", False),
        ("rebind.evil.example:8021", False),
        ("::1", False),
        ("", False),
    ],
)
def test_only_loopback_names_are_hosts_by_default(host: str, allowed: bool) -> None:
    probe = make_mocked_request("GET", "/api/stats", headers={"Host": host})
    assert host_allowed(probe, NodeServerSettings().admin_allowed_hosts) is allowed
