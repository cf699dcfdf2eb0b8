"""shared/websocket/outbox.py on its own, over real sockets on loopback.

An aiohttp server prepares a websocket and hands the test its `Outbox`; the
client is a raw socket with a tiny receive buffer that reads only when the
test says, so what is written directly and what waits in the queue is
decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import WSMsgType, web
from prometheus_client import REGISTRY

from shared.errors import Close
from shared.websocket.outbox import DIRECT_WRITE_LIMIT, Outbox, text_frame
from tests.support import raw_ws
from tests.support.ports import free_port
from tests.support.stack import serving

QUEUE_SIZE = 4
# One frame this big fills the socket's buffers, so what follows is queued.
FILLER = b"f" * (8 << 20)


@dataclass
class Served:
    """The server's side of one websocket: its outbox and what the outbox dropped."""

    ws: web.WebSocketResponse
    transport: asyncio.Transport
    outbox: Outbox
    dropped: asyncio.Queue[Close]
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame (unmasked): its opcode and payload."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(size)


@contextlib.asynccontextmanager
async def websocket(queue_size: int = QUEUE_SIZE) -> AsyncIterator[tuple[Served, Client]]:
    """A served websocket and its raw client, connected."""
    accepted: asyncio.Queue[Served] = asyncio.Queue()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        assert request.transport is not None
        dropped: asyncio.Queue[Close] = asyncio.Queue()
        outbox = Outbox(ws, queue_size, "outbox-test", dropped=dropped.put_nowait, context=dict)
        outbox.start(request.transport, name="outbox-test-sender")
        served = Served(ws, request.transport, outbox, dropped)
        accepted.put_nowait(served)
        try:
            await served.done.wait()
        finally:
            await outbox.stop()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    async with serving(app, free_port()) as address, asyncio.timeout(10):
        client = await _connect(address)
        served = await accepted.get()
        try:
            yield served, client
        finally:
            served.done.set()
            client.writer.close()


async def _connect(address: str) -> Client:
    return Client(*await raw_ws.connect(address, limit=4096))


def payload(size: int) -> bytes:
    return (b"0123456789" * (size // 10 + 1))[:size]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
async def test_text_frame_writes_what_aiohttps_own_writer_writes(size: int) -> None:
    """The outbox writes frames into aiohttp's transport itself: they must be aiohttp's."""
    async with websocket() as (served, client):
        await served.ws.send_frame(payload(size), WSMsgType.TEXT)
        await served.ws.send_frame(b"end", WSMsgType.TEXT)  # the first ended where it should
        expected = text_frame(payload(size)) + text_frame(b"end")
        assert await client.reader.readexactly(len(expected)) == expected


async def test_frames_written_directly_and_queued_arrive_in_order_and_whole() -> None:
    async with websocket(queue_size=100) as (served, client):
        frames = [payload(size) for size in (10, 70_000, 3, 200, *[5_000] * 3)]
        served.outbox.send(FILLER)
        assert not served.outbox.backlog  # written straight into the socket
        assert served.transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        for frame in frames:
            served.outbox.send(frame)
        assert served.outbox.backlog  # queued behind the filler
        assert [await client.frame() for _ in range(1 + len(frames))] == [
            (WSMsgType.TEXT, frame) for frame in (FILLER, *frames)
        ]
        await served.outbox.flush(5)
        assert not served.outbox.backlog and served.dropped.empty()
        served.outbox.send(b"again")  # caught up: written straight away again
        assert not served.outbox.backlog
        assert await client.frame() == (WSMsgType.TEXT, b"again")


async def test_the_newest_job_goes_first_and_replaces_an_older_unsent_one() -> None:
    replaced_before = _jobs_replaced()
    async with websocket() as (served, client):
        served.outbox.send(FILLER)
        served.outbox.send(b"queued 1")
        served.outbox.send_newest(b"job 1")
        served.outbox.send_newest(b"job 2")  # job 1 was never sent: it is dropped
        served.outbox.send(b"queued 2")
        assert _jobs_replaced() == replaced_before + 1
        assert [await client.frame() for _ in range(4)] == [
            (WSMsgType.TEXT, frame) for frame in (FILLER, b"job 2", b"queued 1", b"queued 2")
        ]
        assert served.dropped.empty()


async def test_a_reader_queue_size_frames_behind_is_dropped_without_a_close_frame() -> None:
    queued = [b"queued %d" % n for n in range(QUEUE_SIZE)]
    async with websocket() as (served, client):
        # The control: a queue just full is sent whole, and nobody is dropped.
        served.outbox.send(FILLER)
        for frame in queued:
            served.outbox.send(frame)
        assert [await client.frame() for _ in range(1 + QUEUE_SIZE)] == [
            (WSMsgType.TEXT, frame) for frame in (FILLER, *queued)
        ]
        await served.outbox.flush(5)
        assert served.dropped.empty()
        # One frame more than the queue holds: dropped.
        served.outbox.send(FILLER)
        for frame in [*queued, b"one too many"]:
            served.outbox.send(frame)
        assert await served.dropped.get() == Close.POLICY_VIOLATION
        # What the client still reads ends with the connection cut, never a close frame.
        with pytest.raises((asyncio.IncompleteReadError, ConnectionResetError)):
            while True:
                opcode, _ = await client.frame()
                assert opcode != WSMsgType.CLOSE
        served.outbox.send(b"after the drop")  # ignored, not raised
        assert served.dropped.empty()  # dropped once


async def test_a_peer_gone_while_the_sender_waits_for_it_is_dropped_1001() -> None:
    async with websocket() as (served, client):
        served.outbox.send(FILLER)
        served.outbox.send(FILLER)  # queued: the sender writes it, then waits for the drain
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()  # a reset, as from a client that crashed
        assert await served.dropped.get() == Close.GOING_AWAY


async def test_paced_frames_take_half_the_queue_and_go_out_as_the_reader_reads() -> None:
    """A node's recovery: any number of frames, never dropping a reader that reads."""
    # Each larger than what aiohttp's writer buffers before it waits for the drain.
    paced = [b"paced %d " % n + payload(70_000) for n in range(10)]
    live = [b"live 1", b"live 2"]
    async with websocket() as (served, client):
        served.outbox.send(FILLER)

        async def send_all() -> None:
            for frame in paced:
                await served.outbox.send_paced(frame)

        sending = asyncio.create_task(send_all())
        try:
            done, _ = await asyncio.wait({sending}, timeout=0.3)
            assert not done, "waits while the client reads nothing"
            for frame in live:  # the other half is there for live frames
                served.outbox.send(frame)
            received = [await client.frame() for _ in range(1 + len(paced) + len(live))]
            await asyncio.wait_for(sending, 5)  # the control: done once the client read
        finally:
            sending.cancel()
        assert served.dropped.empty()
        frames = [frame for opcode, frame in received if opcode == WSMsgType.TEXT]
        assert frames[0] == FILLER
        assert [f for f in frames if f.startswith(b"paced")] == paced
        assert [f for f in frames if f.startswith(b"live")] == live


async def test_a_paced_sender_stops_waiting_when_the_peer_is_gone() -> None:
    async with websocket() as (served, client):
        served.outbox.send(FILLER)
        sending = asyncio.create_task(served.outbox.send_paced(FILLER))
        await asyncio.sleep(0)
        paced = [served.outbox.send_paced(b"paced %d" % n) for n in range(QUEUE_SIZE)]
        waiting = asyncio.gather(sending, *paced)
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()
        assert await served.dropped.get() == Close.GOING_AWAY
        await asyncio.wait_for(waiting, 5)  # returned, sending nothing


def _jobs_replaced() -> float:
    return REGISTRY.get_sample_value("wspool_jobs_replaced_total") or 0.0
