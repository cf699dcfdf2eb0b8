"""Bytes, not only frames: the size of a worker's frame, the bytes a connection and
an address may send (issue #19).

A worker's frame is refused past `max_message_bytes` (8 KiB for workers, node
frames keep their 64 KiB); a connection over its byte rate is closed 1008
"rate limit"; an address over its byte rate is read later, never closed, and
another address is served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest

from tests.support import clients
from tests.support.metrics import scrape
from tests.support.poll import until
from tests.support.stack import Stack
from worker_server.settings import WorkerServerSettings

WORKER_FRAME_LIMIT = WorkerServerSettings.model_fields["max_message_bytes"].default


def padded(size: int) -> bytes:
    """An invalid frame (unknown type) of exactly `size` bytes: answered with an error frame."""
    empty = orjson.dumps({"type": "nonsense", "pad": ""})
    return orjson.dumps({"type": "nonsense", "pad": "x" * (size - len(empty))})


async def paced(worker_http: str) -> float:
    samples = await scrape(worker_http)
    return samples.get(("wspool_frames_paced_total", (("role", "worker"),)), 0)


async def test_a_worker_frame_beyond_a_few_kib_closes_1009_and_a_node_frame_does_not(
    start_servers,
) -> None:
    assert WORKER_FRAME_LIMIT == 8192
    async with start_servers() as stack:
        async with clients.worker_client(stack.worker_url) as worker:
            await worker.send(padded(WORKER_FRAME_LIMIT))
            assert (await worker.closed())[0] == 1009
        async with clients.node_client(stack.node_url) as node:  # its own, larger limit
            await node.send(padded(4 * WORKER_FRAME_LIMIT))
            assert (await node.receive())["code"] == "invalid_message"


@pytest.mark.parametrize("role", ["node", "worker"])
async def test_a_connection_over_its_byte_rate_closes_1008_rate_limit(
    start_servers, role: str
) -> None:
    # The smallest burst each role allows (its largest frame), refilled slowly.
    limit = 65536 if role == "node" else WORKER_FRAME_LIMIT
    rate = {"rate_limit_bytes_per_second": 100, "rate_limit_bytes_burst": limit}
    async with start_servers(**{role: rate}) as stack:
        url = stack.node_url if role == "node" else stack.worker_url
        async with clients.connect(url) as ws:
            client = clients.Worker(ws)
            if role == "worker":
                await client.send(clients.welcome())
            for _ in range(5):  # a burst and a quarter; far fewer frames than invalid ones allowed
                await client.send(padded(limit // 4))
            assert await client.closed(timeout=10) == (1008, "rate limit")


async def error_code(client: clients.Client, timeout: float) -> str:
    """The code of the next error frame (a worker is sent the current job first)."""
    async with asyncio.timeout(timeout):
        while (frame := await client.receive(timeout)).get("type") != "error":
            pass
    return str(frame["code"])


def welcomed(stack: Stack, source: str) -> contextlib.AbstractAsyncContextManager[clients.Worker]:
    return clients.worker_client(stack.worker_url, source=source)


async def test_an_address_over_its_byte_rate_is_read_later_and_others_are_not(
    start_servers,
) -> None:
    worker = {"address_bytes_per_second": 8192, "address_bytes_burst": 8192}
    frame = padded(4000)
    async with start_servers(worker=worker) as stack:
        before = await paced(stack.worker_http)
        async with (
            # An address counts as its /24 block: "elsewhere" is another block.
            welcomed(stack, "127.0.60.1") as first,
            welcomed(stack, "127.0.60.2") as second,
            welcomed(stack, "127.0.61.1") as elsewhere,
        ):
            # 40 kB from one address: about four seconds of its rate.
            for _ in range(5):
                await first.send(frame)
                await second.send(frame)
            # The address's debt is its own: another address is read at once.
            await elsewhere.send(frame)
            assert await error_code(elsewhere, timeout=2) == "invalid_message"
            # Paced, not closed: every frame is answered, late.
            for client in (first, second):
                answers = [await error_code(client, timeout=15) for _ in range(5)]
                assert answers == ["invalid_message"] * 5
        assert await paced(stack.worker_http) - before >= 3


async def test_reconnecting_does_not_refill_an_address_bucket(start_servers) -> None:
    worker = {"address_bytes_per_second": 1024, "address_bytes_burst": 8192}
    async with start_servers(worker=worker) as stack:
        async with welcomed(stack, "127.0.62.1") as client:
            for _ in range(2):
                await client.send(padded(4000))
            for _ in range(2):
                assert await error_code(client, timeout=10) == "invalid_message"
        before = await paced(stack.worker_http)
        async with welcomed(stack, "127.0.62.1") as again:
            await again.send(padded(4000))
            assert await error_code(again, timeout=10) == "invalid_message"
        # The bucket the first connection emptied, not a full one: this one waited.
        assert await paced(stack.worker_http) - before >= 1


async def test_a_welcome_is_never_held_in_its_address_s_debt(start_servers) -> None:
    """Another connection's debt must not make a welcome miss its deadline (3000)."""
    worker = {
        "address_bytes_per_second": 1024,
        "address_bytes_burst": 8192,
        "welcome_timeout_seconds": 1,
    }
    async with start_servers(worker=worker) as stack:
        before = await paced(stack.worker_http)
        async with welcomed(stack, "127.0.63.1") as loud:
            for _ in range(2):  # the second leaves the address some six seconds in debt
                await loud.send(padded(7000))
            await until(lambda: paced(stack.worker_http), lambda count: count > before)
            async with welcomed(stack, "127.0.63.1") as newcomer:
                await newcomer.send(padded(100))  # its frames after the welcome do wait
                assert await error_code(newcomer, timeout=15) == "invalid_message"


async def test_tiny_frames_cost_their_address_a_floor_of_bytes(start_servers) -> None:
    """Frames are bounded per address too: each costs at least 256 bytes of its budget."""
    worker = {
        "address_bytes_per_second": 2560,
        "address_bytes_burst": 2560,
        "max_message_bytes": 2048,
    }
    async with start_servers(max_invalid_messages=1000, worker=worker) as stack:
        before = await paced(stack.worker_http)
        async with welcomed(stack, "127.0.64.1") as client:
            for _ in range(15):  # 2 bytes each: 30 bytes, but 3,840 charged
                await client.send(b"{}")
            answers = [await error_code(client, timeout=15) for _ in range(15)]
        assert answers == ["invalid_message"] * 15  # paced, every one answered
        assert await paced(stack.worker_http) - before >= 3
