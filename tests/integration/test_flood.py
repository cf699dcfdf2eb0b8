"""One address flooding worker_server with the largest frames it accepts: the
internal port keeps answering.

Issue #19: every frame up to the size limit was parsed whole, a `:` inside a
string made the verbatim check read it a second time in pure Python, and the
rate limits counted frames, not bytes; a new hardware_id every 19 frames
avoided every ban. The flood below does just that for a few seconds while
`/healthz` is probed; its latencies are printed (`-s`), not asserted: the
machine is shared, a timed assertion would test the neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import aiohttp
import orjson

from tests.support import clients
from tests.support.metrics import scrape
from tests.support.stack import Stack
from worker_server.settings import WorkerServerSettings

FLOOD_SECONDS = 4.0
FLOODERS = 8
# One short of max_invalid_messages (20): the connection is never closed for them,
# and an identity with fewer bad solutions than ban_min_bad is never banned.
FRAMES_PER_IDENTITY = 19
PROBE_EVERY_SECONDS = 0.02


def maximal_frame(limit: int) -> bytes:
    """A solution just under `limit` bytes, as costly to read as a frame can be made:
    hundreds of keys (each validated), each value a string holding a `:`."""
    keys: dict[str, str] = {}
    frame = b""
    while True:
        candidate = orjson.dumps(
            {
                "type": "solution",
                "task_id": str(uuid.uuid4()),
                "solution_target": 1,
                "solution": {**keys, f"k{len(keys)}": ":"},
            }
        )
        if len(candidate) >= limit:  # aiohttp refuses a frame of `limit` bytes or more
            return frame
        frame, keys = candidate, {**keys, f"k{len(keys)}": ":"}


async def flood(url: str, frame: bytes, until: float) -> None:
    """Welcome, 19 frames, a new connection and identity; again until `until`."""
    while time.monotonic() < until:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            async with clients.connect(url) as ws:
                await ws.send_bytes(orjson.dumps(clients.welcome()))
                for _ in range(FRAMES_PER_IDENTITY):
                    if ws.closed or time.monotonic() >= until:
                        break
                    await ws.send_bytes(frame)


async def probe(url: str, done: asyncio.Event) -> list[tuple[int, float]]:
    """GET `url` over and over until `done`: each answer's status and seconds taken."""
    answers: list[tuple[int, float]] = []
    async with aiohttp.ClientSession() as session:
        while not done.is_set():
            started = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                answers.append((response.status, time.perf_counter() - started))
            await asyncio.sleep(PROBE_EVERY_SECONDS)
    return answers


async def frames_in(worker_http: str) -> float:
    return (await scrape(worker_http)).get(("wspool_frames_in_total", (("role", "worker"),)), 0)


async def test_one_address_flooding_maximal_frames_leaves_healthz_answering(
    start_servers,
) -> None:
    limit = WorkerServerSettings.model_fields["max_message_bytes"].default
    frame = maximal_frame(limit)
    async with start_servers() as stack:
        before = await frames_in(stack.worker_http)
        started = time.monotonic()
        answers = await _flooded(stack, frame)
        took = time.monotonic() - started
        received = await frames_in(stack.worker_http) - before
    latencies = sorted(seconds for _, seconds in answers)
    print(
        f"\nflood: {FLOODERS} connections sending {len(frame)}-byte frames for {FLOOD_SECONDS} s, "
        f"{received:.0f} frames read in {took:.1f} s; /healthz answered {len(answers)} times, "
        f"median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    assert received > FLOODERS * FRAMES_PER_IDENTITY  # the flood did reach the server
    assert {status for status, _ in answers} == {200}


async def _flooded(stack: Stack, frame: bytes) -> list[tuple[int, float]]:
    """Probe /healthz until every flooder is done and its last frames were read
    (closing waits for the server to read up to the close frame)."""
    until = time.monotonic() + FLOOD_SECONDS
    done = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        answers = group.create_task(probe(f"{stack.worker_http}/healthz", done))
        try:
            async with asyncio.TaskGroup() as flooders:
                for _ in range(FLOODERS):
                    flooders.create_task(flood(stack.worker_url, frame, until))
        finally:
            done.set()
    return answers.result()
