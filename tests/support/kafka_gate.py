"""A TCP gate in front of the fault tests' Tansu, which advertises the gate's address.

Tansu, restarted empty, takes records for topics it no longer has and drops
them when the topics are created again. An operator re-creates the topics
before traffic returns; the gate lets a test do the same: it cuts every
client off, and while the broker restarts lets through only the setup's
client (told apart by the client id in its first request).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from tests.support.ports import free_port

SETUP_CLIENT_ID = "wspool-setup"
CHUNK = 1 << 16


class KafkaGate:
    def __init__(self, broker_port: int) -> None:
        self.port = free_port()
        self.broker_port = broker_port
        self.setup_only = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._cut_all()
            await self._server.wait_closed()

    def admit_setup_only(self) -> None:
        """Cut every connection; until `open`, only the setup's client gets through."""
        self.setup_only = True
        self._cut_all()

    def open(self) -> None:
        self.setup_only = False

    def _cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self._writers.add(client)
        broker: asyncio.StreamWriter | None = None
        try:
            first = await _first_request(client_reader)
            if self.setup_only and _client_id(first) != SETUP_CLIENT_ID:
                return
            broker_reader, broker = await asyncio.open_connection("127.0.0.1", self.broker_port)
            self._writers.add(broker)
            broker.write(first)
            await _pipe_both_ways(client_reader, client, broker_reader, broker)
        except (OSError, asyncio.IncompleteReadError):
            pass  # either side went away: so does the other
        finally:
            for writer in (client, broker):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.transport.abort()


async def _first_request(reader: asyncio.StreamReader) -> bytes:
    size = await reader.readexactly(4)
    return size + await reader.readexactly(struct.unpack(">i", size)[0])


def _client_id(request: bytes) -> str | None:
    """The client id of a request header: size, api key, version, correlation id, id."""
    (length,) = struct.unpack_from(">h", request, 12)
    return None if length < 0 else request[14 : 14 + length].decode(errors="replace")


async def _pipe_both_ways(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    broker_reader: asyncio.StreamReader,
    broker: asyncio.StreamWriter,
) -> None:
    """Copy both ways until one side closes; then the other copy is cancelled."""
    copies = {
        asyncio.create_task(_copy(client_reader, broker)),
        asyncio.create_task(_copy(broker_reader, client)),
    }
    try:
        await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for copy in copies:
            copy.cancel()
        for copy in copies:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await copy


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
