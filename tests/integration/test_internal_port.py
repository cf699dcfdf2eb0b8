"""Websockets on the public port only; health, metrics, API and dashboard on the internal one."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support import clients
from tests.support.stack import Stack, StartServers

INTERNAL_PATHS = ["/healthz", "/readyz", "/metrics"]
NODE_INTERNAL_PATHS = [*INTERNAL_PATHS, "/api/stats", "/api/openapi.json", "/dashboard"]
TOKEN = "s3ssion"


async def status_and_body(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


def public_http(websocket_url: str) -> str:
    return websocket_url.replace("ws://", "http://").rstrip("/")


@pytest.mark.parametrize("role", ["node", "worker"])
async def test_each_port_serves_only_its_own_routes(stack: Stack, role: str) -> None:
    websocket_url = stack.node_url if role == "node" else stack.worker_url
    internal = stack.node_http if role == "node" else stack.worker_http
    paths = NODE_INTERNAL_PATHS if role == "node" else INTERNAL_PATHS
    async with aiohttp.ClientSession() as session:
        for path in paths:
            assert (await status_and_body(session, internal + path))[0] == 200, path
            status, body = await status_and_body(session, public_http(websocket_url) + path)
            assert status == 404 and "not served on this port" in body, path
        # The websocket itself: refused on the internal port...
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(internal + "/")
        assert refused.value.status == 404
    # ...and served on the public one.
    if role == "node":
        async with clients.node_client(websocket_url) as node:
            assert not node.ws.closed
    else:
        async with clients.worker_client(websocket_url, clients.welcome("ports-1")) as worker:
            assert not worker.ws.closed


async def test_dashboard_login_sets_a_cookie_that_opens_the_admin_api(
    start_servers: StartServers,
) -> None:
    async with start_servers(node={"admin_token": TOKEN}) as stack:
        stats, session_url = f"{stack.node_http}/api/stats", f"{stack.node_http}/api/session"
        # unsafe: keep cookies of an IP address (127.0.0.1), as browsers do.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            assert (await status_and_body(browser, stats))[0] == 401
            async with browser.post(session_url, json={"token": "wrong"}) as answer:
                assert answer.status == 401 and not answer.cookies
            form = {"token": TOKEN}  # what a cross-site form would send
            async with browser.post(session_url, data=form) as answer:
                assert answer.status == 415
            async with browser.post(session_url, json={"token": TOKEN}) as answer:
                assert answer.status == 200
                cookie = answer.cookies["wspool_admin"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict"
            assert TOKEN not in cookie.value
            assert (await status_and_body(browser, stats))[0] == 200
            async with browser.delete(session_url) as answer:
                assert answer.status == 200
            assert (await status_and_body(browser, stats))[0] == 401


async def test_a_forged_cookie_opens_nothing(start_servers: StartServers) -> None:
    async with start_servers(node={"admin_token": TOKEN}) as stack:
        for value in (TOKEN, "0" * 64, ""):
            async with aiohttp.ClientSession(cookies={"wspool_admin": value}) as browser:
                status, _ = await status_and_body(browser, f"{stack.node_http}/api/stats")
                assert status == 401, value
