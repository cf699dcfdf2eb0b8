"""The dashboard's one shared document per process: builds per interval, the stream cap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.support import clients
from tests.support.http import call
from tests.support.metrics import scrape
from tests.support.poll import until
from tests.support.ports import free_port

BUILDS = ("wspool_dashboard_builds_total", ())
STREAMS = ("wspool_dashboard_streams", ())
STREAM_COUNT = 6


@dataclass
class EventStream:
    """One open `/dashboard/events`, its events read as they come."""

    documents: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def connected_workers(self) -> int | None:
        return self.documents[-1]["stats"]["workers"]["connected"] if self.documents else None


async def _read(response: aiohttp.ClientResponse, into: EventStream) -> None:
    kind = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
            if kind == "dashboard":
                into.documents.append(orjson.loads(data))
            else:
                into.errors.append(data)


@contextlib.asynccontextmanager
async def event_streams(base: str, count: int) -> AsyncIterator[list[EventStream]]:
    """`count` streams, open (each answered 200) while the block runs."""
    streams = [EventStream() for _ in range(count)]
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        tasks = []
        for stream in streams:
            response = await session.get(f"{base}/dashboard/events")
            assert response.status == 200, await response.text()
            tasks.append(group.create_task(_read(response, stream)))
        try:
            yield streams
        finally:
            for task in tasks:
                task.cancel()


async def _builds(base: str) -> float:
    return (await scrape(base))[BUILDS]


async def test_every_stream_sends_the_one_build_of_each_interval(start_servers) -> None:
    """N streams cost one document per interval, not N; and every stream follows the changes."""
    async with start_servers(node={"dashboard_interval_seconds": 0.3}) as stack:
        before = await _builds(stack.node_http)
        async with event_streams(stack.node_http, STREAM_COUNT) as streams:
            await until(lambda: all(len(s.documents) >= 1 for s in streams))
            connected = streams[0].connected_workers()
            # The positive control: a worker connects, and every stream shows it.
            async with clients.worker_client(stack.worker_url):
                await until(lambda: all((s.connected_workers() or 0) > connected for s in streams))
                await until(lambda: all(len(s.documents) >= 4 for s in streams))
        await until(lambda: scrape(stack.node_http), lambda m: m[STREAMS] == 0)
        built = await _builds(stack.node_http) - before
    sent_per_stream = max(len(s.documents) for s in streams)
    assert not any(s.errors for s in streams)
    # A stream sees every build made while it is open; one more may be under way as they close.
    assert built <= sent_per_stream + 1, (built, [len(s.documents) for s in streams])


async def test_polls_within_an_interval_read_the_same_build(start_servers) -> None:
    async with start_servers(node={"dashboard_interval_seconds": 60.0}) as stack:
        before = await _builds(stack.node_http)
        documents = [await call("GET", f"{stack.node_http}/api/dashboard") for _ in range(5)]
        assert [status for status, _ in documents] == [200] * 5
        assert all(body == documents[0][1] for _, body in documents)
        assert await _builds(stack.node_http) - before == 1


async def test_streams_beyond_the_cap_are_refused_with_retry_after(start_servers) -> None:
    async with start_servers(node={"max_dashboard_streams": 2}) as stack:
        url = f"{stack.node_http}/dashboard/events"
        async with event_streams(stack.node_http, 2) as streams:
            await until(lambda: all(s.documents for s in streams))
            async with aiohttp.ClientSession() as session, session.get(url) as refused:
                assert refused.status == 503
                assert int(refused.headers["Retry-After"]) > 0
                body = orjson.loads(await refused.read())
            assert body["error"] == "unavailable"
            assert "dashboard streams" in body["detail"]
            # Refused streams still have the dashboard: polling reads the shared build.
            status, _document = await call("GET", f"{stack.node_http}/api/dashboard")
            assert status == 200
        # The positive control: with the others gone, a stream is accepted again.
        await until(lambda: scrape(stack.node_http), lambda m: m[STREAMS] == 0)
        async with event_streams(stack.node_http, 1) as (again,):
            await until(lambda: again.documents)


async def test_a_failed_build_is_an_error_event_and_a_503(start_servers) -> None:
    """Postgres unreachable: the stream says so and stays open; the poll answers 503 JSON."""
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    settings = {"postgres_dsn": nowhere, "auto_migrate": False, "dashboard_interval_seconds": 0.2}
    async with start_servers(node=settings, ready=False) as stack:
        async with event_streams(stack.node_http, 1) as (stream,):
            await until(lambda: len(stream.errors) >= 2)  # one per build, the stream goes on
        status, body = await call("GET", f"{stack.node_http}/api/dashboard")
    assert not stream.documents
    assert (status, body["error"]) == (503, "unavailable")


async def test_open_streams_end_when_the_server_stops(start_servers) -> None:
    stream = EventStream()
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as group:
        async with start_servers() as stack:
            response = await session.get(f"{stack.node_http}/dashboard/events")
            reading = group.create_task(_read(response, stream))
            await until(lambda: stream.documents)  # the positive control: it was live
        # The server stopped with the stream open: its body ended, nothing cut it.
        async with asyncio.timeout(5):
            await reading
