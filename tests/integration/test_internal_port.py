"""Websockets on the public port only; health, metrics, API and dashboard on the internal one."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.support import clients
from tests.support.http import ADMIN_REQUEST, call, status
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
            async with browser.delete(session_url, headers=ADMIN_REQUEST) as answer:
                assert answer.status == 200
            assert (await status_and_body(browser, stats))[0] == 401


async def test_a_forged_cookie_opens_nothing(start_servers: StartServers) -> None:
    async with start_servers(node={"admin_token": TOKEN}) as stack:
        for value in (TOKEN, "0" * 64, ""):
            async with aiohttp.ClientSession(cookies={"wspool_admin": value}) as browser:
                status, _ = await status_and_body(browser, f"{stack.node_http}/api/stats")
                assert status == 401, value


async def raw_status(http_url: str, request: bytes) -> bytes:
    """The status code of one request written byte for byte (headers no client would send)."""
    host, port = http_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return status_line.split()[1]


async def logged_in(session: aiohttp.ClientSession, stack: Stack) -> str:
    async with session.post(f"{stack.node_http}/api/session", json={"token": TOKEN}) as answer:
        assert answer.status == 200
        return answer.cookies["wspool_admin"].value


async def test_each_login_is_a_new_session_that_its_logout_ends(
    start_servers: StartServers,
) -> None:
    async with start_servers(node={"admin_token": TOKEN}) as stack:
        stats = f"{stack.node_http}/api/stats"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            first, second = await logged_in(browser, stack), await logged_in(browser, stack)
            async with browser.post(f"{stack.node_http}/api/session", json={"token": TOKEN}):
                pass
        assert first != second and len(first) >= 32
        async with aiohttp.ClientSession(cookies={"wspool_admin": first}) as old:
            assert (await status_and_body(old, stats))[0] == 200  # the control: still valid
            async with old.delete(f"{stack.node_http}/api/session", headers=ADMIN_REQUEST) as out:
                assert out.status == 200
            assert (await status_and_body(old, stats))[0] == 401  # replayed after its logout
        async with aiohttp.ClientSession(cookies={"wspool_admin": second}) as other:
            assert (await status_and_body(other, stats))[0] == 200  # another login's goes on


async def test_the_cookie_is_secure_when_tls_terminates_in_front(
    start_servers: StartServers,
) -> None:
    for secure in (False, True):
        settings = {"admin_token": TOKEN, "admin_cookie_secure": secure}
        async with start_servers(node=settings) as stack:
            url = f"{stack.node_http}/api/session"
            async with aiohttp.ClientSession() as session:
                async with session.post(url, json={"token": TOKEN}) as answer:
                    assert bool(answer.cookies["wspool_admin"]["secure"]) is secure


async def test_wrong_tokens_are_limited_per_address_with_429(start_servers: StartServers) -> None:
    async with start_servers(node={"admin_token": TOKEN}) as stack:
        url = f"{stack.node_http}/api/session"
        for _ in range(5):
            assert (await call("POST", url, {"token": "guess"}))[0] == 401
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"token": TOKEN}) as answer:
                body, retry_after = await answer.json(), answer.headers.get("Retry-After")
        assert answer.status == 429 and body["error"] == "rate_limited"  # even the right token
        assert retry_after is not None and 1 <= int(retry_after) <= 60


async def test_a_cookie_of_any_bytes_is_a_401_not_a_500(start_servers: StartServers) -> None:
    async with start_servers(node={"admin_token": TOKEN}) as stack:
        host = stack.node_http.removeprefix("http://")
        for cookie in (b"wspool_admin=\xff\xfe\xc3(", b'wspool_admin="\x80"', b"wspool_admin=a;;="):
            request = b"GET /api/stats HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n" % (
                host.encode(),
                cookie,
            )
            assert await raw_status(stack.node_http, request + b"Connection: close\r\n\r\n") == (
                b"401"
            ), cookie


async def test_a_cross_site_form_post_is_refused(start_servers: StartServers) -> None:
    """A page in the operator's browser posting to the loopback admin API (no token set)."""
    async with start_servers() as stack:
        url = f"{stack.node_http}/api/dead-letters/job/requeue"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        evil = {**form, "Origin": "http://evil.example"}
        status, body = await call("POST", url, b"a=1", headers=evil)
        assert (status, body["error"]) == (403, "forbidden_origin")
        assert "http://evil.example" in body["detail"]
        status, body = await call("POST", url, b"a=1", headers=form)  # an Origin-less browser
        assert (status, body["error"]) == (415, "unsupported_media_type")
        job = f"{stack.node_http}/api/jobs"
        assert (await call("POST", job, {}, headers={"Origin": "http://evil.example"}))[0] == 403
        # The controls: an API client's request, and the dashboard's own page's.
        assert (await call("POST", url, headers=ADMIN_REQUEST))[0] == 200
        own = {**ADMIN_REQUEST, "Origin": stack.node_http}
        assert (await call("POST", url, headers=own))[0] == 200


async def test_a_dns_rebound_page_reads_nothing(start_servers: StartServers) -> None:
    async with start_servers() as stack:
        for path in ("/api/fleet", "/api/stats", "/dashboard"):
            url = stack.node_http + path
            refused, body = await call("GET", url, headers={"Host": "rebind.evil.example"})
            assert (refused, body["error"]) == (403, "forbidden_host"), path
            assert await status(url) == 200, path  # the control: Host 127.0.0.1:<port>
        # The rebound page's POST: its Origin is its own Host, which is not one of ours.
        rebound = {"Host": "rebind.evil.example:80", "Origin": "http://rebind.evil.example:80"}
        requeue = f"{stack.node_http}/api/dead-letters/job/requeue"
        assert (await call("POST", requeue, headers={**ADMIN_REQUEST, **rebound}))[0] == 403
    async with start_servers(node={"admin_allowed_hosts": "wspool-admin.internal"}) as stack:
        named = {"Host": "wspool-admin.internal:8021"}
        assert (await call("GET", f"{stack.node_http}/api/stats", headers=named))[0] == 200
        assert (await call("GET", f"{stack.node_http}/api/stats"))[0] == 403
