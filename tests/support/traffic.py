"""Real traffic through the stack, with a ledger of what each client connection saw.

Clients get no per-message acknowledgement: the server handles a connection's
frames in order and, when it cannot accept one (1011) or shuts down (1001),
closes the connection without reading further. So for every connection the
stored messages must be a prefix of what it sent, and all of them when the
server never closed it. That is the accounting the fault tests check. A job
node_server could not check against the newest one (the database away) is
refused with an error frame `unavailable` naming its height, the connection
left open: it counts as refused, and it must not be stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tests.support.clients import Worker, job, next_height, solution, solution_body, welcome

CLIENT_ERRORS = (aiohttp.ClientError, ConnectionError, OSError, TimeoutError)
# An `unavailable` error frame's detail names the job it refused (docs/protocol.md).
REFUSED_HEIGHT = re.compile(r"^block height (\d+) ")
SETTLE_SECONDS = 120.0


@dataclass
class Sent:
    """One client connection: what it sent, in order, and the code if the server closed it."""

    keys: list[Any] = field(default_factory=list)
    close_code: int | None = None
    refused: set[Any] = field(default_factory=set)  # answered `unavailable`, left open

    def note(self, frame: dict) -> None:
        """An answer from the server: a job it refused unchecked."""
        if frame.get("type") == "error" and frame.get("code") == "unavailable":
            if found := REFUSED_HEIGHT.match(frame.get("detail", "")):
                self.refused.add(int(found[1]))


@dataclass
class Ledger:
    connections: list[Sent] = field(default_factory=list)
    delivered: list[Any] = field(default_factory=list)
    connect_failures: int = 0

    @property
    def sent(self) -> list[Any]:
        return [key for c in self.connections for key in c.keys]

    def closes(self) -> Counter[int | None]:
        return Counter(c.close_code for c in self.connections if c.close_code is not None)

    def expected(self) -> set[Any]:
        """What must be stored: all of a connection's frames unless the server closed it
        or refused them."""
        return {
            k for c in self.connections if c.close_code is None for k in c.keys
        } - self.refused()

    def refused(self) -> set[Any]:
        return {k for c in self.connections for k in c.refused}

    def check(self, stored: set[Any]) -> int:
        """Assert the prefix rule for every connection; returns how many were refused."""
        refused = 0
        assert len(self.sent) == len(set(self.sent)), "a test client sent a key twice"
        assert stored <= set(self.sent), "stored something nobody sent"
        assert not stored & self.refused(), "stored a job it refused"
        for connection in self.connections:
            offered = [k for k in connection.keys if k not in connection.refused]
            kept = [k for k in offered if k in stored]
            assert kept == offered[: len(kept)], (
                f"connection closed with {connection.close_code}: stored frames are not a "
                f"prefix of what it sent ({len(kept)} of {len(offered)})"
            )
            if connection.close_code is None:
                assert len(kept) == len(offered), "lost frames of an open connection"
            refused += len(connection.keys) - len(kept)
        return refused


async def _reader(ws: aiohttp.ClientWebSocketResponse, sink: Callable[[dict], None]) -> int | None:
    """Hand every data frame to `sink` until the server closes; its close code."""
    while True:
        message = await ws.receive()
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            sink(orjson.loads(message.data))
            continue
        return ws.close_code


class Round:
    """One round of traffic: a node waits at one height and collects the solutions that
    workers stream for its task, while a second node streams newer jobs to a listening
    worker. Connections the server closes reconnect and go on with what is left.
    """

    def __init__(self, node_url: str, worker_url: str, pace: float = 0.005) -> None:
        self.node_url = node_url
        self.worker_url = worker_url
        self.pace = pace
        self.height = next_height()
        self.task_id = uuid.UUID(int=0)
        self.solutions = Ledger()
        self.jobs = Ledger()
        self.job_frames: list[list[dict]] = []  # per listening-worker connection
        self.node_frames: list[list[str]] = []  # nonces, per listening-node connection
        self.node_closes: list[int | None] = []
        self.worker_closes: list[int | None] = []
        self.sent = asyncio.Event()
        self.stop = asyncio.Event()
        self.cut: Any = None  # Postgres time of a fault that may lose Kafka records

    async def start(self) -> None:
        """The job the solutions answer: sent, stored, and seen by a worker."""
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.worker_url, autoclose=False) as ws:
                worker = Worker(ws)
                await worker.send(welcome())
                async with session.ws_connect(self.node_url) as node:
                    await node.send_json(job(self.height))
                    frame = await worker.job_for(self.height, timeout=60)
        self.task_id = uuid.UUID(frame["task_id"])

    async def run(self, solutions: int, jobs: int, progress: Callable[[int], None]) -> None:
        """Stream everything; returns once sent, the listeners run until `stop`."""
        nonces = [str(uuid.uuid4().int % 2**62) for _ in range(solutions)]
        heights = [next_height() for _ in range(jobs)]

        def solution_frame(nonce: str) -> dict:
            return solution(str(self.task_id), body=solution_body(nonce))

        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(self.node_url, None, self._solution, self.node_closes))
            group.create_task(
                self._listen(self.worker_url, welcome(), self._job, self.worker_closes)
            )
            group.create_task(self._stream(self.jobs, heights, self.node_url, None, job))
            await self._stream(
                self.solutions, nonces, self.worker_url, welcome(), solution_frame, progress
            )

    def _job(self, frame: dict | None) -> None:
        if frame is None:  # a new connection
            self.job_frames.append([])
        else:
            self.job_frames[-1].append(frame)

    def _solution(self, frame: dict | None) -> None:
        if frame is None:  # a new connection: recovery may send again what the last one got
            self.node_frames.append([])
            return
        nonce = str(frame["partial_solution"]["nonce"])
        self.solutions.delivered.append(nonce)
        self.node_frames[-1].append(nonce)

    async def _listen(
        self, url: str, hello: dict | None, sink: Callable[[dict | None], None], closes: list
    ) -> None:
        """A listening client; the node one (re-)sends its job on every connection."""
        while not self.stop.is_set():
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.ws_connect(url, autoclose=False) as ws:
                        sink(None)
                        await ws.send_json(hello or job(self.height))
                        closes.append(
                            await _until(asyncio.create_task(_reader(ws, sink)), self.stop)
                        )
            except CLIENT_ERRORS:
                await asyncio.sleep(0.2)

    async def _stream(
        self,
        ledger: Ledger,
        remaining: list[Any],
        url: str,
        hello: dict | None,
        frame: Callable[[Any], dict],
        progress: Callable[[int], None] = lambda _sent: None,
    ) -> None:
        """Send `remaining` in order; the last connection stays open until `stop`."""
        while remaining and not self.stop.is_set():
            connection = Sent()
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.ws_connect(url, autoclose=False) as ws:
                        ledger.connections.append(connection)
                        if hello is not None:
                            await ws.send_json(hello)
                        reading = asyncio.create_task(_reader(ws, connection.note))
                        with contextlib.suppress(*CLIENT_ERRORS):  # closed: the reader knows
                            for key in remaining:
                                if reading.done():
                                    break
                                await ws.send_json(frame(key))
                                connection.keys.append(key)
                                progress(len(ledger.sent))
                                if len(connection.keys) % 10 == 0:
                                    await asyncio.sleep(self.pace)
                        remaining = remaining[len(connection.keys) :]
                        if not remaining and ledger is self.solutions:
                            self.sent.set()
                        connection.close_code = await _until(
                            reading, self.stop if not remaining else asyncio.Event()
                        )
            except CLIENT_ERRORS:
                ledger.connect_failures += 1
                await asyncio.sleep(0.2)


async def _until(reading: asyncio.Task[int | None], stop: asyncio.Event) -> int | None:
    """The server's close code, or None when the test stopped first (then we close)."""
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if reading in done:
        with contextlib.suppress(*CLIENT_ERRORS):
            return reading.result()
        return -1
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError, *CLIENT_ERRORS):
        await reading
    return None
