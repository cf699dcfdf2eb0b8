"""A swarm of simulated workers in one process, driven by the benchmark over a pipe.

Each swarm process owns its share of worker websockets, spread over several
127.0.0.x source addresses (one connector each) so 10,000 sockets fit on
loopback. It records when each job frame arrives (wall clock, comparable with
the coordinator's send times on the same machine) and sends solutions at a
paced rate when asked. Every wait is bounded; the coordinator's "close" ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

CONNECT_CONCURRENCY = 100
CONNECT_TIMEOUT = 30.0


@dataclass
class SimulatedWorker:
    ws: aiohttp.ClientWebSocketResponse
    welcomed_ns: int
    first_job_ns: int | None = None
    task_id: str | None = None
    reader: asyncio.Task[None] | None = None


@dataclass
class Swarm:
    index: int
    url: str
    sources: list[str]
    received: Any  # multiprocessing.Value('q'): frames received, polled by the coordinator
    workers: list[SimulatedWorker] = field(default_factory=list)
    receipts: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    error_frames: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def start_sessions(self) -> None:
        for source in self.sources:
            connector = aiohttp.TCPConnector(limit=0, local_addr=(source, 0))
            self.sessions.append(aiohttp.ClientSession(connector=connector))

    async def open(self, session: aiohttp.ClientSession, hardware_id: str) -> SimulatedWorker:
        """A websocket, welcomed; raises what the handshake raised."""
        ws = await session.ws_connect(self.url, autoclose=False, heartbeat=None, max_msg_size=0)
        try:
            await ws.send_bytes(_welcome(hardware_id))
        except BaseException:
            await _close_quietly(ws)
            raise
        return SimulatedWorker(ws, time.time_ns())

    async def connect(self, count: int, concurrency: int = CONNECT_CONCURRENCY) -> dict[str, Any]:
        """Open `count` more workers, `concurrency` at a time; report failures."""
        semaphore = asyncio.Semaphore(concurrency)
        first = len(self.workers)
        failures: dict[str, int] = defaultdict(int)
        ids = itertools.count(len(self.workers))

        async def one() -> None:
            number = next(ids)
            session = self.sessions[number % len(self.sessions)]
            async with semaphore:
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        worker = await self.open(session, f"bench-{self.index}-{number}")
                except (aiohttp.ClientError, OSError, TimeoutError) as error:
                    failures[type(error).__name__] += 1
                    return
            worker.reader = asyncio.create_task(self.read(worker))
            self.workers.append(worker)

        await asyncio.gather(*(one() for _ in range(count)))
        connected = len(self.workers) - first
        return {"connected": connected, "first": first, "failures": dict(failures)}

    async def ready_times(self, timeout: float, since: int = 0) -> dict[str, Any]:
        """Welcome -> first job (ms) of workers from number `since` on, waiting up to `timeout`."""
        workers = self.workers[since:]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(w.first_job_ns is None for w in workers):
            await asyncio.sleep(0.05)
        ready = [(w.first_job_ns - w.welcomed_ns) / 1e6 for w in workers if w.first_job_ns]
        return {"ready_ms": ready, "without_job": len(workers) - len(ready)}

    async def read(self, worker: SimulatedWorker, until_job: bool = False) -> bool:
        """Record each job frame's arrival (and count error frames) until the socket ends,
        or, `until_job`, the first job: then True."""
        while True:
            message = await worker.ws.receive()
            now = time.time_ns()
            if message.type is not aiohttp.WSMsgType.TEXT:
                return False
            frame = orjson.loads(message.data)
            if "task_id" not in frame:  # an error frame (e.g. a rate limit warning): not a job
                self.error_frames[str(frame.get("code"))] += 1
                continue
            if worker.first_job_ns is None:
                worker.first_job_ns = now
            worker.task_id = frame["task_id"]
            self.receipts[frame["epoch_challenge"]["epoch_number"]].append(now)
            with self.received.get_lock():
                self.received.value += 1
            if until_job:
                return True

    async def send_solution(self, worker: SimulatedWorker, target: int) -> None:
        await worker.ws.send_bytes(_solution(worker.task_id or "", target, self.index))

    async def close_worker(self, worker: SimulatedWorker) -> None:
        await _close_quietly(worker.ws)

    async def forget_workers(self) -> None:
        """Stop reading every worker (their sockets already gone) and drop them."""
        for worker in self.workers:
            if worker.reader is not None:
                worker.reader.cancel()
        await asyncio.gather(*(w.reader for w in self.workers if w.reader), return_exceptions=True)
        self.workers.clear()

    def take_receipts(self) -> dict[int, list[int]]:
        receipts, self.receipts = dict(self.receipts), defaultdict(list)
        return receipts

    async def solutions(
        self, rate: float, duration: float, connections: int, target: int
    ) -> dict[str, Any]:
        """Send `rate` solutions/s for `duration` s round-robin over `connections` workers.

        Each solution carries its send time (`bench_sent_ns`) and a unique nonce,
        so the node side can time it and the database can count it.
        """
        senders = [w for w in self.workers if w.task_id is not None][:connections]
        if not senders:
            return {"sent": 0, "errors": 0, "task_id": None}
        sent = errors = 0
        start = time.monotonic()
        turn = itertools.cycle(senders)
        while (elapsed := time.monotonic() - start) < duration:
            due = int(rate * elapsed) - sent
            for _ in range(due):
                worker = next(turn)
                try:
                    await self.send_solution(worker, target)
                    sent += 1
                except (ConnectionError, RuntimeError):
                    errors += 1
                    sent += 1
            await asyncio.sleep(0.002)
        return {"sent": sent - errors, "errors": errors, "task_id": senders[0].task_id}

    async def close(self) -> None:
        for worker in self.workers:
            if worker.reader is not None:
                worker.reader.cancel()
        await asyncio.gather(*(_close_quietly(w.ws) for w in self.workers), return_exceptions=True)
        for worker in self.workers:
            if worker.reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.reader
        self.workers.clear()
        for session in self.sessions:
            await session.close()


async def _close_quietly(ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 5)


def _welcome(hardware_id: str) -> bytes:
    return orjson.dumps(
        {
            "type": "welcome",
            "ip": "127.0.0.1",
            "address": "aleo1bench",
            "hardware": "bench",
            "hardware_id": hardware_id,
            "caption": "bench",
        }
    )


_nonces = itertools.count()


def _solution(task_id: str, target: int, swarm: int) -> bytes:
    nonce = f"{swarm}-{next(_nonces)}-{uuid.uuid4().hex[:8]}"
    body = {
        "partial_solution": {"address": "aleo1bench", "nonce": nonce, "commitment": "c0ffee"},
        "proof.w": {"x": "1", "y": "2", "infinity": False},
        "bench_sent_ns": time.time_ns(),
    }
    return orjson.dumps(
        {"type": "solution", "task_id": task_id, "solution": body, "solution_target": target}
    )
