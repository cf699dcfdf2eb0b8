"""The PROXY protocol gate on both event loops a service may run (`event_loop`).

The gate hands aiohttp a transport of its own around the loop's: uvloop's
transports are not asyncio's, so both loops serve a request and a websocket
through it, on a real socket, here.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import aiohttp
import pytest
import uvloop
from aiohttp import web

from shared.runtime.listeners import ProxyProtocolSite
from shared.runtime.proxied import TrustedProxies
from tests.support.ports import free_port
from tests.support.proxy import relay, v1_header, v2_header

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


async def remote(request: web.Request) -> web.Response:
    return web.json_response({"remote": request.remote})


async def echo_remote(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(f"{message.data} from {request.remote}")
    return ws


async def served_through_gate(header: bytes) -> tuple[dict[str, str], str]:
    """What a request and a websocket through a relay writing `header` are answered."""
    app = web.Application()
    app.router.add_get("/", remote)
    app.router.add_get("/ws", echo_remote)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    trusted = TrustedProxies([ipaddress.ip_network("127.0.0.1/32")])
    await ProxyProtocolSite(runner, "127.0.0.1", port, trusted, None, backlog=128).start()
    try:
        async with relay(f"127.0.0.1:{port}", header) as url, aiohttp.ClientSession() as session:
            async with session.get(url.replace("ws://", "http://")) as response:
                http = await response.json()
            async with session.ws_connect(f"{url}ws") as ws:
                await ws.send_str("hello")
                echoed = await ws.receive_str(timeout=5)
        return http, echoed
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    ("header", "client"),
    [(v1_header("198.51.100.7"), "198.51.100.7"), (v2_header("2001:db8::7"), "2001:db8::7")],
)
def test_gate_serves_http_and_websockets_on_each_loop(
    loop: str, header: bytes, client: str
) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        http, ws = runner.run(asyncio.wait_for(served_through_gate(header), 10))
    assert http == {"remote": client}
    assert ws == f"hello from {client}"
