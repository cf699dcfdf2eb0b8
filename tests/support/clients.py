"""Websocket clients for tests: a node and a worker speaking protocol v1."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from tests.support.stack import Stack

# Heights grow by one through the session, like a chain's: workers only get newer
# ones, and a job far above the newest is refused (max_height_jump). Every session
# has its own database, so each starts here.
_last_height = [1_000_000]


def next_height() -> int:
    _last_height[0] += 1
    return _last_height[0]


def challenge(height: int) -> dict[str, Any]:
    return {"epoch_number": height, "epoch_block_hash": f"hash-{height}", "degree": 8191}


def job(height: int, proof_target: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "type": "job",
        "epoch_challenge": challenge(height),
        "proof_target": proof_target,
        "block_height": height,
        **extra,
    }


def welcome(hardware_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "welcome",
        "ip": "203.0.113.7",
        "address": "aleo1test",
        "hardware": "RTX 4090",
        "hardware_id": hardware_id or f"gpu-{uuid.uuid4().hex[:8]}",
        "caption": "rig-7",
        **extra,
    }


def solution_body(nonce: int | str | None = None) -> dict[str, Any]:
    return {
        "partial_solution": {
            "address": "aleo1test",
            "nonce": uuid.uuid4().int % 2**62 if nonce is None else nonce,
            "commitment": "c0ffee",
        },
        "proof.w": {"x": "1", "y": "2", "infinity": False},
    }


def solution(task_id: str, target: int = 200, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "solution",
        "task_id": task_id,
        "solution": body or solution_body(),
        "solution_target": target,
    }


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any] | bytes | str) -> None:
        if isinstance(message, dict):
            await self.ws.send_bytes(orjson.dumps(message))
        elif isinstance(message, bytes):
            await self.ws.send_bytes(message)
        else:
            await self.ws.send_str(message)

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout)
        if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raise ConnectionError(f"closed: {self.ws.close_code} {message.extra!r}")
        assert message.type == aiohttp.WSMsgType.TEXT, "the server sends text frames"
        return orjson.loads(message.data)

    async def nothing_within(self, seconds: float) -> bool:
        """True when no data frame arrives within `seconds` on a connection still open.

        A closed connection delivers nothing either: that is a failure, not a pass.
        """
        try:
            message = await self.ws.receive(seconds)
        except TimeoutError:
            return True
        if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            raise AssertionError(
                f"the connection closed ({self.ws.close_code} {message.extra!r}) "
                "while the test waited for nothing to arrive"
            )
        return False

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; returns (code, reason)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return self.ws.close_code, str(message.extra or "")


class Worker(Client):
    async def job_for(self, height: int, timeout: float = 5.0) -> dict[str, Any]:
        """The job frame for `height`, skipping older latest-job frames before it."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout)
                if frame.get("epoch_challenge", {}).get("epoch_number") == height:
                    return frame


async def job_sent(
    node: Client, worker: Worker, height: int, timeout: float = 5.0, **fields: Any
) -> str:
    """Send a job for `height` from `node`, wait until `worker` has it: its task_id."""
    await node.send(job(height, **fields))
    return str((await worker.job_for(height, timeout))["task_id"])


@contextlib.asynccontextmanager
async def connect(
    url: str, source: str | None = None, **kwargs: Any
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A websocket to `url`; from the loopback address `source` (127.0.0.x) when given."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.ws_connect(url, autoclose=False, **kwargs) as ws:
            yield ws


@contextlib.asynccontextmanager
async def node_client(url: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with connect(url, **kwargs) as ws:
        yield Client(ws)


@contextlib.asynccontextmanager
async def worker_client(
    url: str, hello: dict[str, Any] | None = None, source: str | None = None, **kwargs: Any
) -> AsyncIterator[Worker]:
    async with connect(url, source, **kwargs) as ws:
        worker = Worker(ws)
        await worker.send(hello or welcome())
        yield worker


@contextlib.asynccontextmanager
async def worker_and_node(stack: Stack) -> AsyncIterator[tuple[Worker, Client]]:
    """A worker on `stack`'s worker_server, then a node on its node_server."""
    async with worker_client(stack.worker_url) as worker, node_client(stack.node_url) as node:
        yield worker, node


@contextlib.asynccontextmanager
async def worker_and_nodes(stack: Stack, count: int) -> AsyncIterator[tuple[Worker, list[Client]]]:
    """A worker on `stack`'s worker_server, then `count` nodes on its node_server."""
    async with contextlib.AsyncExitStack() as opened:
        worker = await opened.enter_async_context(worker_client(stack.worker_url))
        nodes = [
            await opened.enter_async_context(node_client(stack.node_url)) for _ in range(count)
        ]
        yield worker, nodes


async def handshake_answer(url: str, source: str) -> tuple[int, dict[str, Any], str | None]:
    """(status, JSON body, Retry-After) of a plain GET of the websocket from `source`.

    A refusal answers JSON; a handshake the server would take answers 400 (no
    websocket key), with the empty body here.
    """
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url, headers={"Upgrade": "websocket"}) as response:
            json = response.content_type == "application/json"
            body = await response.json() if json else {}
            return response.status, body, response.headers.get("Retry-After")


async def every_kind_of_frame(
    node: Client, worker: Worker, body: dict[str, Any]
) -> tuple[int, str]:
    """An invalid frame, two jobs and a solution delivered, for the metrics each one counts.

    The first job may reach the worker as the current job on joining, the
    second is live fan-out and so a job latency sample. (height, task id) of it.
    """
    await node.send(b"{not json")
    assert (await node.receive())["code"] == "invalid_message"
    for height in (next_height(), next_height()):
        task_id = await job_sent(node, worker, height)
    await worker.send(solution(task_id, target=500, body=body))
    assert await node.receive() == body
    return height, task_id


@contextlib.asynccontextmanager
async def on_a_new_job(stack: Stack, **fields: Any) -> AsyncIterator[tuple[Worker, Client, str]]:
    """A worker and a node, the node's job at a new height delivered: (worker, node, task id)."""
    async with worker_and_node(stack) as (worker, node):
        yield worker, node, await job_sent(node, worker, next_height(), **fields)
