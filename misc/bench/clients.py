"""The benchmark's handles on its clients: swarm processes and the node it plays."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from misc.bench.waves import swarm_main

REPLY_TIMEOUT = 120.0


class SwarmHandle:
    """One swarm process: commands go down a pipe, each answer waited for with a bound."""

    def __init__(self, index: int, url: str, sources: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.received = context.Value("q", 0)
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=swarm_main,
            args=(child, index, url, sources, self.received),
            name=f"bench-swarm-{index}",
            daemon=True,
        )
        self.process.start()

    async def call(self, command: str, *args: Any, timeout: float = REPLY_TIMEOUT) -> Any:
        self.pipe.send((command, args))
        return await asyncio.to_thread(self._reply, timeout)

    def _reply(self, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"{self.process.name} did not answer within {timeout:g} s")
        return self.pipe.recv()

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, OSError, EOFError):
            await self.call("close", timeout=60)
        await asyncio.to_thread(self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)


@contextlib.asynccontextmanager
async def swarms(count: int, url: str, sources: list[str]) -> AsyncIterator[list[SwarmHandle]]:
    """`count` swarm processes, each with its own share of the source addresses."""
    handles = [SwarmHandle(i, url, sources[i::count] or sources) for i in range(count)]
    try:
        yield handles
    finally:
        await asyncio.gather(*(h.close() for h in handles))


def received(handles: list[SwarmHandle]) -> int:
    return sum(h.received.value for h in handles)


async def wait_received(handles: list[SwarmHandle], expected: int, timeout: float) -> int:
    """Poll the swarms' counters until `expected` frames arrived or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while (count := received(handles)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return count


class Node:
    """The node the benchmark plays: sends jobs, times the solutions it gets back."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.latencies_ms: list[float] = []
        self.errors: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def send_job(self, height: int, proof_target: int) -> int:
        """Send a job; returns its send time (ns, wall clock)."""
        job = {
            "type": "job",
            "epoch_challenge": {"epoch_number": height, "epoch_block_hash": f"bench-{height}"},
            "proof_target": proof_target,
            "block_height": height,
        }
        sent = time.time_ns()
        await self.ws.send_bytes(orjson.dumps(job))
        return sent

    def take(self) -> list[float]:
        latencies, self.latencies_ms = self.latencies_ms, []
        return latencies

    async def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self.latencies_ms) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return len(self.latencies_ms)

    async def _read(self) -> None:
        while True:
            message = await self.ws.receive()
            now = time.time_ns()
            if message.type is not aiohttp.WSMsgType.TEXT:
                self.errors.append(f"node connection closed: {self.ws.close_code}")
                return
            frame = orjson.loads(message.data)
            if "bench_sent_ns" in frame:
                self.latencies_ms.append((now - frame["bench_sent_ns"]) / 1e6)
            else:
                self.errors.append(str(frame)[:200])

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


@contextlib.asynccontextmanager
async def node(url: str) -> AsyncIterator[Node]:
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(30):
            ws = await session.ws_connect(url, autoclose=False, heartbeat=None)
        client = Node(ws)
        try:
            yield client
        finally:
            await client.close()
