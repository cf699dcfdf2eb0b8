"""The confirming publisher against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from yarl import URL

from shared.codec import encode
from shared.errors import PublishRefused
from shared.metrics import PUBLISH_BATCH
from shared.microbatch import BATCH_CONTENT_TYPE
from shared.protocol import JobMessage
from shared.rabbit import Publisher
from shared.routes import JOB
from tests.support import clients
from tests.support.ports import free_port
from tests.support.stack import Backends


async def test_a_publish_right_after_start_waits_for_the_first_connection(
    backends: Backends,
) -> None:
    publisher = Publisher(backends.rabbitmq_url, JOB.exchange, "wspool-test")
    running = asyncio.create_task(publisher.run())
    try:
        assert not publisher.ready  # still connecting: the publish below has to wait
        height = clients.next_height()
        job = JobMessage(
            epoch_challenge=clients.challenge(height), proof_target=1, block_height=height
        )
        await publisher.publish(encode(job), received_at=0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_publish_without_a_broker_is_refused() -> None:
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    publisher = Publisher(nowhere, JOB.exchange, "wspool-test")
    running = asyncio.create_task(publisher.run())
    try:
        with pytest.raises(PublishRefused, match="not connected"):
            await publisher.publish(b"{}", received_at=0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_concurrent_publishes_share_confirms_and_each_caller_gets_its_own(
    backends: Backends,
) -> None:
    publisher = Publisher(backends.rabbitmq_url, JOB.exchange, "wspool-test-batch")
    running = asyncio.create_task(publisher.run())
    histogram = PUBLISH_BATCH.labels(exchange=JOB.exchange)
    try:
        await publisher.publish(encode(_job()), received_at=0)  # connected
        publishes_before = _observed(histogram)
        bodies = [encode(_job()) for _ in range(60)]
        await asyncio.gather(*(publisher.publish(body, received_at=1) for body in bodies))
        # Every caller returned, confirmed; the 60 went out in far fewer publishes.
        assert _observed(histogram) - publishes_before < 10
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    with pytest.raises(PublishRefused):  # stopped: refused, not left waiting
        await publisher.publish(b"{}", received_at=0)


async def test_a_publisher_stopped_with_sends_in_flight_refuses_their_callers_and_ends_them(
    backends: Backends,
) -> None:
    async with ConfirmHold(backends.rabbitmq_url, BATCH_CONTENT_TYPE.encode()) as hold:
        publisher = Publisher(hold.url, JOB.exchange, "wspool-test-stop")
        running = asyncio.create_task(publisher.run())
        await publisher.publish(encode(_job()), received_at=0)  # connected, through the hold
        callers = [
            asyncio.create_task(publisher.publish(encode(_job()), received_at=1))
            for _ in range(300)
        ]
        async with asyncio.timeout(10):
            await hold.holding.wait()
        # A batch went out and waits for a confirm that will not come; the rest wait their turn.
        assert "Publisher._send" in _pending_publisher_tasks(), "a send in flight"
        assert not any(caller.done() for caller in callers[2:])
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        assert _pending_publisher_tasks() == [], "every send ended, every caller answered"
    outcomes = [caller.exception() for caller in callers]
    # The first two went out alone, before anything was held: they may have been confirmed.
    assert all(isinstance(outcome, PublishRefused) for outcome in outcomes[2:]), outcomes
    assert all(outcome is None or isinstance(outcome, PublishRefused) for outcome in outcomes)


async def test_a_lone_send_in_flight_when_the_publisher_stops_is_refused_not_cancelled(
    backends: Backends,
) -> None:
    """The library fails the confirm it still awaits with CancelledError as the
    connection closes: the caller, who was not cancelled, must hear a refusal."""
    marker = uuid.uuid4().hex
    async with ConfirmHold(backends.rabbitmq_url, marker.encode()) as hold:
        publisher = Publisher(hold.url, JOB.exchange, "wspool-test-stop-lone")
        running = asyncio.create_task(publisher.run())
        await publisher.publish(encode(_job()), received_at=0)  # connected, through the hold
        held = _job()
        held.epoch_challenge["marker"] = marker
        caller = asyncio.create_task(publisher.publish(encode(held), received_at=0))
        async with asyncio.timeout(10):
            await hold.holding.wait()
        assert "Publisher.publish" in _pending_publisher_tasks(), "the send in flight"
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        async with asyncio.timeout(10):
            with pytest.raises(PublishRefused, match="connection closed before the confirm"):
                await caller


def _pending_publisher_tasks() -> list[str]:
    """What the publisher's own tasks and its callers' run, of those not done."""
    running = [task.get_coro().__qualname__ for task in asyncio.all_tasks() if not task.done()]
    return sorted(name for name in running if name.startswith("Publisher."))


class ConfirmHold:
    """A TCP relay to RabbitMQ that drops what the broker sends once `marker` went
    through it: the confirm of that publish never arrives, so its send stays in flight."""

    def __init__(self, broker: str, marker: bytes) -> None:
        self.broker = URL(broker)
        self.marker = marker
        self.port = free_port()
        self.holding = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return str(self.broker.with_port(self.port))

    async def __aenter__(self) -> ConfirmHold:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for relay in self._relays:
            relay.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _relay(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        self._relays.add(asyncio.current_task())  # type: ignore[arg-type]
        broker, to_broker = await asyncio.open_connection(self.broker.host, self.broker.port)
        try:
            async with asyncio.TaskGroup() as copies:
                copies.create_task(self._to_broker(client, to_broker))
                copies.create_task(self._to_client(broker, to_client))
        finally:
            to_broker.close()
            to_client.close()

    async def _to_broker(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tail = b""
        while chunk := await reader.read(1 << 16):
            if self.marker in tail + chunk:  # set before the broker has it: no confirm gets by
                self.holding.set()
            tail = chunk[-len(self.marker) :]
            writer.write(chunk)
            await writer.drain()
        writer.close()  # the client closed: so does the broker, which ends the other copy

    async def _to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            if not self.holding.is_set():
                writer.write(chunk)
                await writer.drain()


def _job() -> JobMessage:
    height = clients.next_height()
    return JobMessage(
        epoch_challenge=clients.challenge(height), proof_target=1, block_height=height
    )


def _observed(histogram: object) -> float:
    """How many publishes the histogram counted (its `_count` sample)."""
    for metric in histogram.collect():  # type: ignore[attr-defined]
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    return 0.0
