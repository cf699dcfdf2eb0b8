"""Recovery latency: a node reconnects and re-sends its job; how soon is it whole again?

Each round: a node sends a job at a fresh height and leaves; a worker finds a
solution for it, which is stored; the node then reconnects and re-sends the
job. Measured: from the reconnect to the first recovered solution received.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import orjson

from misc.bench.facts import summary

PROOF_TARGET = 1
STORED_TIMEOUT = 10.0


def _job(height: int) -> bytes:
    challenge = {"epoch_number": height, "epoch_block_hash": f"bench-recovery-{height}"}
    job = {"epoch_challenge": challenge, "proof_target": PROOF_TARGET, "block_height": height}
    return orjson.dumps({"type": "job", **job})


def _welcome() -> bytes:
    hardware_id = f"bench-recovery-{uuid.uuid4().hex[:8]}"
    fields = ("ip", "address", "hardware", "caption")
    return orjson.dumps(
        {"type": "welcome", "hardware_id": hardware_id, **dict.fromkeys(fields, "b")}
    )


async def _frame(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
    message = await ws.receive(timeout)
    if message.type is not aiohttp.WSMsgType.TEXT:
        raise ConnectionError(f"closed: {ws.close_code}")
    frame: dict[str, Any] = orjson.loads(message.data)
    return frame


async def _task_for(worker: aiohttp.ClientWebSocketResponse, height: int) -> str:
    while True:
        frame = await _frame(worker, STORED_TIMEOUT)
        if frame.get("epoch_challenge", {}).get("epoch_number") == height:
            return str(frame["task_id"])


async def _stored(db: asyncpg.Connection, nonce: str) -> None:
    deadline = time.monotonic() + STORED_TIMEOUT
    query = "SELECT 1 FROM solution WHERE nonce = $1 AND broadcast_at IS NOT NULL"
    while await db.fetchval(query, nonce) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"solution {nonce} not stored within {STORED_TIMEOUT:g} s")
        await asyncio.sleep(0.02)


async def _round(
    session: aiohttp.ClientSession,
    node_url: str,
    worker: aiohttp.ClientWebSocketResponse,
    db: asyncpg.Connection,
    height: int,
) -> float:
    """One round; the recovery latency in milliseconds."""
    async with session.ws_connect(node_url) as node:
        await node.send_bytes(_job(height))
        task_id = await _task_for(worker, height)
    nonce = str(uuid.uuid4().int % 2**62)
    solution = {"partial_solution": {"nonce": nonce}}
    frame = {"type": "solution", "task_id": task_id, "solution": solution, "solution_target": 1}
    await worker.send_bytes(orjson.dumps(frame))
    await _stored(db, nonce)
    started = time.perf_counter()
    async with session.ws_connect(node_url) as node:
        await node.send_bytes(_job(height))
        recovered = await _frame(node, STORED_TIMEOUT)
        elapsed_ms = (time.perf_counter() - started) * 1000
    if recovered != solution:
        raise AssertionError(f"recovered {recovered!r}, expected {solution!r}")
    return elapsed_ms


async def recovery_phase(
    node_url: str, worker_url: str, postgres_dsn: str, rounds: int, heights: Callable[[], int]
) -> dict[str, Any]:
    """`rounds` reconnect-and-recover rounds, each at a fresh height from `heights`."""
    latencies = []
    db = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(worker_url) as worker:
                await worker.send_bytes(_welcome())
                for _ in range(rounds):
                    latencies.append(await _round(session, node_url, worker, db, heights()))
    finally:
        await db.close()
    return {"rounds": rounds, "latency_ms": summary(latencies)}
