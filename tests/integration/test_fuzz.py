"""Hostile traffic against running servers: they stay up, bounded and correct.

Thousands of random, malformed, truncated, non-UTF-8, deeply nested, huge and
binary frames from many connections at once, raw garbage below the websocket
layer, a connection flood and a message flood; afterwards both servers answer
/healthz and /readyz, every connection is accounted for, memory stayed
bounded, and a normal node -> worker -> node round trip still works. The
random choices come from a fixed seed, so a failure can be replayed.
Loopback only; the outcome counts are printed (`pytest -s`) for the record.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import random
import re
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from tests.support import clients
from tests.support.poll import until
from tests.support.stack import Stack

SEED = 5_2026
FUZZ_CONNECTIONS = {"node": 25, "worker": 35}
FRAMES_PER_CONNECTION = 40
MAX_MESSAGE_BYTES = 65536
FLOOD_CONNECTIONS = 160  # against a per-IP cap of 100
Frame = tuple[str, bytes, WSMsgType]

NOT_INT = ["x", -1, 1.5, True, None, 2**63, {}, [1]]
NOT_OBJECT = ["x", 1, None, [], [{}], True]


def hostile_frame(rng: random.Random, role: str) -> Frame:
    """One frame no server may accept as a valid job (jobs would reach other tests)."""
    kind = rng.choice(
        ["bytes", "non_utf8_text", "truncated", "nested", "wrong_types", "not_object"]
    )
    valid = clients.job(1) if role == "node" else clients.solution(str(rng.randbytes(16).hex()))
    if kind == "bytes":
        return kind, rng.randbytes(rng.randrange(0, 2000)), WSMsgType.BINARY
    if kind == "non_utf8_text":
        return kind, b'{"a": "\xff\xfe' + rng.randbytes(50) + b'"}', WSMsgType.TEXT
    if kind == "truncated":
        data = orjson.dumps(valid)
        return kind, data[: rng.randrange(0, len(data))], WSMsgType.TEXT
    if kind == "nested":
        depth = rng.randrange(33, 10000)
        field = b"epoch_challenge" if role == "node" else b"solution"
        inner = b'{"a":' * depth + b"1" + b"}" * depth
        return kind, b'{"' + field + b'":' + inner + b"}", WSMsgType.TEXT
    if kind == "wrong_types":
        field = rng.choice([k for k in valid if k != "type"])
        bad = rng.choice(NOT_OBJECT if field in ("epoch_challenge", "solution") else NOT_INT)
        return kind, orjson.dumps({**valid, field: bad}), WSMsgType.TEXT
    return kind, orjson.dumps(rng.choice(NOT_OBJECT)), WSMsgType.TEXT


def huge_frame(rng: random.Random) -> Frame:
    """Larger than the limit: the connection ends with 1009, so it goes last."""
    size = rng.randrange(MAX_MESSAGE_BYTES + 1, 4 * MAX_MESSAGE_BYTES)
    return "huge", b'{"pad": "' + b"x" * size + b'"}', WSMsgType.BINARY


class Outcomes:
    def __init__(self) -> None:
        self.sent: collections.Counter[str] = collections.Counter()  # written by the client
        self.answers: collections.Counter[str] = collections.Counter()
        self.ends: collections.Counter[str] = collections.Counter()

    def report(self) -> str:
        return (
            f"sent {sum(self.sent.values())} {dict(self.sent)}\n"
            f"answers {dict(self.answers)}\nends {dict(self.ends)}"
        )


async def _drain(ws: aiohttp.ClientWebSocketResponse, outcomes: Outcomes, label: str) -> None:
    """Read the answers until the server closes, or until it has been quiet a while."""
    try:
        while True:
            message = await ws.receive(timeout=2.0)
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                frame = orjson.loads(message.data)
                outcomes.answers[frame.get("code", "job")] += 1
                continue
            # 1006 after an oversize frame: the server closed with 1009 while we were
            # still writing, and the reset discarded its close frame on our side.
            reason = re.sub(r"\d+", "N", str(message.extra or ""))[:40]
            outcomes.ends[f"{label} closed {ws.close_code} {reason}".strip()] += 1
            return
    except TimeoutError:
        outcomes.ends[f"{label} still open"] += 1


async def fuzz_connection(
    session: aiohttp.ClientSession, url: str, role: str, rng: random.Random, outcomes: Outcomes
) -> None:
    frames = [hostile_frame(rng, role) for _ in range(FRAMES_PER_CONNECTION)]
    if rng.random() < 0.3:
        frames.append(huge_frame(rng))
    async with session.ws_connect(url, autoclose=False, max_msg_size=0) as ws:
        if role == "worker":
            first = orjson.dumps(clients.welcome()) if rng.random() < 0.85 else frames.pop()[1]
            await ws.send_bytes(first)
        for kind, data, opcode in frames:
            try:
                await ws.send_frame(data, opcode)
            except (ConnectionError, aiohttp.ClientError):
                break
            outcomes.sent[kind] += 1
        await _drain(ws, outcomes, role)


async def raw_garbage(
    address: str, websocket: bool, rng: random.Random, outcomes: Outcomes
) -> None:
    """Below the websocket layer: junk instead of HTTP, or junk after a real handshake
    (on a websocket port)."""
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        handshake = websocket and rng.random() < 0.5
        if handshake:
            key = base64.b64encode(rng.randbytes(16)).decode()
            writer.write(
                f"GET / HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 101")
        writer.write(rng.randbytes(rng.randrange(1, 3000)))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(256), 10)
    except (ConnectionError, asyncio.IncompleteReadError):
        answer = b""
    finally:
        writer.close()
    if not answer:
        what = "dropped"
    elif answer.startswith(b"HTTP/"):
        what = f"HTTP {answer.split()[1].decode()}"
    elif answer[0] == 0x88 and len(answer) >= 4:
        what = f"close frame {int.from_bytes(answer[2:4], 'big')}"
    else:
        what = "other"
    outcomes.ends[f"raw {'after handshake' if handshake else 'no handshake'}: {what}"] += 1


async def connection_flood(session: aiohttp.ClientSession, url: str, outcomes: Outcomes) -> None:
    """Many connections from one address at once; each is held until all have tried."""
    everyone_tried = asyncio.Event()
    attempts = 0

    async def one() -> None:
        nonlocal attempts
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            ws = await session.ws_connect(url, autoclose=False)
            outcomes.ends["flood upgraded"] += 1
        except aiohttp.WSServerHandshakeError as error:
            outcomes.ends[f"flood refused HTTP {error.status}"] += 1
        attempts += 1
        if attempts == FLOOD_CONNECTIONS:
            everyone_tried.set()
        await asyncio.wait_for(everyone_tried.wait(), 30)
        if ws is not None:
            await ws.close()

    await asyncio.gather(*(one() for _ in range(FLOOD_CONNECTIONS)))


async def message_flood(
    session: aiohttp.ClientSession, url: str, role: str, outcomes: Outcomes
) -> None:
    async with session.ws_connect(url, autoclose=False) as ws:
        if role == "worker":
            await ws.send_bytes(orjson.dumps(clients.welcome()))
        for _ in range(1000):
            try:
                await ws.send_bytes(b"{}")
            except (ConnectionError, aiohttp.ClientError):
                break
            outcomes.sent["flood"] += 1
        await _drain(ws, outcomes, "message flood")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def open_connections(http: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{http}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("wspool_open_connections{")
    )


async def _settled(http: str, baseline: float) -> None:
    await until(lambda: open_connections(http), lambda count: count == baseline, timeout=20)


@pytest.fixture(scope="module")
async def fuzzed(start_servers) -> AsyncIterator[Stack]:
    async with start_servers(
        max_invalid_messages=1000,  # here the rate limit, not this, ends a flood
        rate_limit_per_second=20,
        rate_limit_burst=50,
        max_message_bytes=MAX_MESSAGE_BYTES,
        worker={
            "max_connections_per_ip": 100,
            "welcome_timeout_seconds": 2,
            # Judged, not enforced: this hostile traffic comes from 127.0.0.1, whose
            # ban would be stored and refuse every test after this one (test_bans.py).
            "ban_mode": "dry_run",
        },
    ) as servers:
        yield servers


async def test_hostile_traffic_leaves_servers_up_bounded_and_working(fuzzed: Stack) -> None:
    rng = random.Random(SEED)
    outcomes = Outcomes()
    baseline_connections = await open_connections(fuzzed.node_http)
    rss_before = rss_bytes()
    urls = {"node": fuzzed.node_url, "worker": fuzzed.worker_url}
    addresses = [  # and whether a websocket answers there
        (fuzzed.node_address, True),
        (fuzzed.worker_address, True),
        (fuzzed.node_http.removeprefix("http://"), False),
        (fuzzed.worker_http.removeprefix("http://"), False),
    ]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.timeout(45):
        await asyncio.gather(
            *(
                fuzz_connection(session, urls[role], role, random.Random(rng.random()), outcomes)
                for role, count in FUZZ_CONNECTIONS.items()
                for _ in range(count)
            ),
            *(
                raw_garbage(*rng.choice(addresses), random.Random(rng.random()), outcomes)
                for _ in range(40)
            ),
            *(message_flood(session, urls[r], r, outcomes) for r in ("node", "node", "worker")),
        )
        await _settled(fuzzed.node_http, baseline_connections)
        await connection_flood(session, fuzzed.worker_url, outcomes)
    print(outcomes.report())

    async with aiohttp.ClientSession() as session:
        for base in (fuzzed.node_http, fuzzed.worker_http):
            for path in ("/healthz", "/readyz"):
                async with session.get(base + path) as response:
                    assert response.status == 200, f"{base}{path}"
    await _settled(fuzzed.node_http, baseline_connections)  # every hostile connection is gone
    growth = rss_bytes() - rss_before
    print(f"rss growth {growth / 2**20:.1f} MiB")
    assert growth < 256 * 2**20

    height = clients.next_height()
    async with (
        clients.node_client(fuzzed.node_url) as node,
        clients.worker_client(fuzzed.worker_url) as worker,
    ):
        task_id = await clients.job_sent(node, worker, height, timeout=15, proof_target=100)
        body = clients.solution(task_id, target=100)
        await worker.send(body)
        assert await node.receive(timeout=15) == body["solution"]

    assert sum(outcomes.sent.values()) > 2000
    # Connections of earlier phases may still be closing: they only add refusals.
    assert outcomes.ends["flood upgraded"] <= 100
    assert outcomes.ends["flood refused HTTP 503"] >= FLOOD_CONNECTIONS - 100
    assert outcomes.ends["message flood closed 1008 rate limit"] == 3
    assert outcomes.answers["invalid_message"] > 1000
