"""Fault injection on the backbone: RabbitMQ, Postgres and Kafka (Tansu) restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from shared.routes import JOB, SOLUTION
from tests.support.accounting import assert_clean_logs, run_round
from tests.support.fault_stack import FaultStack, fault_stack
from tests.support.poll import until

pytestmark = pytest.mark.faults
OUTAGE_SECONDS = 2.0
# Longer than the 2 s after which a fan-out consumer counts a partition as unreachable.
KAFKA_OUTAGE_SECONDS = 3.0


async def consumers_back(stack: FaultStack) -> None:
    """Each work queue has its consumer again (aio-pika must re-register it)."""
    await until(
        lambda: asyncio.to_thread(_consumer_counts, stack),
        lambda counts: counts == [1, 1],
        timeout=60,
        every=0.5,
    )


def _consumer_counts(stack: FaultStack) -> list[int]:
    return [stack.rabbit.consumers(queue) for queue in (JOB.queue, SOLUTION.queue)]


async def outage(stop: Callable[[], None], start: Callable[[], None]) -> None:
    """A dependency stopped for OUTAGE_SECONDS, then started again (whatever happened)."""
    try:
        await asyncio.to_thread(stop)
        await asyncio.sleep(OUTAGE_SECONDS)
    finally:
        await asyncio.to_thread(start)


async def test_rabbitmq_restart_refuses_or_delivers_and_consumers_resume(
    faults: FaultStack,
) -> None:
    stack = faults

    async def restart() -> None:
        await outage(stack.rabbit.stop_app, stack.rabbit.start_app)
        await consumers_back(stack)
        await stack.all_ready()

    figures, _ = await run_round(stack, "RabbitMQ restart", restart)
    assert set(figures.close_codes) <= {1011}
    # Traffic after the restart flows again: a second round needs no fault to pass.
    await run_round(
        stack, "after RabbitMQ restart", _nothing, solutions=100, jobs=10, fault_after=0
    )
    assert_clean_logs(stack)


async def test_postgres_restart_messages_wait_then_flow(faults: FaultStack) -> None:
    stack = faults

    async def restart() -> None:
        await outage(stack.postgres.stop, stack.postgres.start)
        await stack.all_ready()

    figures, round_ = await run_round(stack, "Postgres restart", restart)
    # Known tasks are cached, so solutions keep being accepted while Postgres is away;
    # they wait in RabbitMQ and are stored once it is back.
    assert figures.solutions_refused == 0
    # Jobs node_server could not check against the newest one meanwhile are refused
    # with `unavailable` (the height guard fails closed), the connection left open;
    # none is refused otherwise, none refused is stored (the ledger checks that).
    assert figures.jobs_refused == len(round_.jobs.refused())
    assert_clean_logs(stack)


async def test_kafka_restart_fanout_resumes_without_reconnecting() -> None:
    # Its own stack: the broker comes back empty, which later tests should not inherit.
    async with fault_stack() as stack:
        await _kafka_restart(stack)


async def _kafka_restart(stack: FaultStack) -> None:

    async def restart() -> None:
        # Every client loses the broker at once, as when it goes away.
        stack.kafka_gate.admit_setup_only()
        try:
            stack.kafka.kill()
            await asyncio.sleep(KAFKA_OUTAGE_SECONDS)
        finally:
            stack.kafka.start()  # same port, empty: the topics are gone
        # As the runbook says, the topics come back before the clients do (Tansu
        # would drop records it took for a topic that is created after them).
        await stack.setup()
        stack.kafka_gate.open()
        await stack.all_ready()

    figures, round_ = await run_round(
        stack, "Tansu kill and restart", restart, kafka_loses_data=True
    )
    assert figures.solutions_refused == 0 and figures.jobs_refused == 0
    assert round_.node_closes == [None], "the waiting node had to reconnect"
    assert round_.worker_closes == [None], "the listening worker had to reconnect"
    # Producers keep working with the restarted broker: a round without a fault.
    await run_round(stack, "after Tansu restart", _nothing, solutions=100, jobs=10, fault_after=0)
    assert_clean_logs(stack)


async def _nothing() -> None:
    return None
