"""Persist-and-broadcast, run directly against Postgres and Tansu: stored once, produced once."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import hypothesis
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from process_job_worker.persist import jobs
from process_solution_worker.persist import SOLUTIONS, UnknownTask
from shared.codec import parse
from shared.db import create_pool
from shared.kafka import Broadcaster, broadcaster, client_options, ensure_topics
from shared.pipeline.consumer import Delivery
from shared.pipeline.persist import Persisted, persist_and_broadcast
from shared.pipeline.settings import ConsumerSettings
from shared.protocol import JobMessage, NodeJob, SolutionMessage, now_ns
from shared.settings import MAX_HEIGHT_JUMP
from tests.support import clients, json_text
from tests.support.json_text import Pairs, plain, problem, render
from tests.support.stack import Backends

JOBS = jobs(MAX_HEIGHT_JUMP)
INSERT_ROW = """
INSERT INTO job (block_height, epoch_challenge, task_id, broadcast_at)
VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)
"""


def delivery(height: int, epoch_challenge: dict[str, Any]) -> Delivery[JobMessage]:
    job = JobMessage(epoch_challenge=epoch_challenge, proof_target=1, block_height=height)
    # The AMQP message itself is the consumer's business, not persist's.
    return Delivery(message=None, item=job, received_at=now_ns())  # type: ignore[arg-type]


def solution_delivery(task_id: uuid.UUID, target: int = 1) -> Delivery[SolutionMessage]:
    body = {"partial_solution": {"nonce": uuid.uuid4().hex}}
    item = SolutionMessage(
        task_id=task_id, solution=body, solution_target=target, hardware_id="h", caption="c"
    )
    return Delivery(message=None, item=item, received_at=now_ns())  # type: ignore[arg-type]


@pytest.fixture
async def settings(backends: Backends) -> AsyncIterator[ConsumerSettings]:
    yield ConsumerSettings(**backends.settings())


@dataclasses.dataclass
class Persisting:
    """What persist_and_broadcast runs against: a pool, a producer, a private topic."""

    settings: ConsumerSettings
    pool: asyncpg.Pool
    kafka: Broadcaster
    topic: str  # one partition, fresh: what a test produced is all that is on it

    async def persist(self, kind: Persisted[Any, Any], batch: list[Delivery[Any]]) -> None:
        """persist_and_broadcast one batch of `kind` (JOBS, SOLUTIONS) to the private topic."""
        await persist_and_broadcast(
            dataclasses.replace(kind, topic=self.topic), self.pool, self.kafka, batch
        )

    async def stored_job(
        self, height: int, epoch_challenge: dict[str, Any] | None = None, broadcast: bool = True
    ) -> uuid.UUID:
        """A job row as process_job_worker leaves it (or a crash before the mark); its task."""
        task = uuid.uuid4()
        challenge_ = clients.challenge(height) if epoch_challenge is None else epoch_challenge
        await self.pool.execute(INSERT_ROW, height, challenge_, task, broadcast)
        return task

    async def produced(self) -> list[dict[str, Any]]:
        return await produced(self.settings, self.topic)


async def private_topic(settings: ConsumerSettings) -> str:
    """A fresh one-partition topic: what a test produced is all that is on it."""
    topic = f"persist-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, {topic: 1})
    return topic


async def produced(settings: ConsumerSettings, topic: str) -> list[dict[str, Any]]:
    """Every record on the (one-partition) topic, up to its end."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        records = []
        while await consumer.position(partition) < end:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            records += [orjson.loads(r.value) for r in batch.get(partition, [])]
        return records
    finally:
        await consumer.stop()


@pytest.fixture
async def persisting(settings: ConsumerSettings) -> AsyncIterator[Persisting]:
    topic = await private_topic(settings)
    dsn = settings.postgres_dsn.get_secret_value()
    async with create_pool(dsn) as pool, broadcaster(settings) as kafka:
        yield Persisting(settings, pool, kafka, topic)


async def test_each_height_is_stored_once_and_only_what_was_not_broadcast_is_produced(
    persisting: Persisting,
) -> None:
    pool = persisting.pool
    done, stuck, new = clients.next_height(), clients.next_height(), clients.next_height()
    stored_challenge = {"stored": "before the crash"}
    # One height stored and broadcast; one stored but never broadcast (a crash between).
    await persisting.stored_job(done)
    await persisting.stored_job(stuck, stored_challenge, broadcast=False)
    batch = [
        delivery(done, clients.challenge(done)),
        delivery(stuck, {"resent": "by the node"}),
        delivery(new, {"first": 1}),
        delivery(new, {"second": 2}),
    ]
    await persisting.persist(JOBS, batch)
    records = await persisting.produced()
    assert sorted((r["block_height"], r["epoch_challenge"]) for r in records) == [
        (stuck, stored_challenge),  # the stored row's object, not the resent one
        (new, {"first": 1}),  # the first of the batch wins
    ]
    rows = await pool.fetch(
        "SELECT block_height, epoch_challenge, broadcast_at FROM job"
        " WHERE block_height = ANY($1::bigint[])",
        [done, stuck, new],
    )
    assert sorted(r["block_height"] for r in rows) == [done, stuck, new]
    assert all(r["broadcast_at"] is not None for r in rows)
    assert {r["block_height"]: r["epoch_challenge"] for r in rows}[new] == {"first": 1}

    # Redelivered after a crash before the ack: nothing is stored or produced again.
    await persisting.persist(JOBS, batch)
    assert len(await persisting.produced()) == len(records)


async def test_a_solution_for_an_unknown_task_fails_its_batch_and_the_retry_broadcasts_once(
    persisting: Persisting,
) -> None:
    pool = persisting.pool
    task = await persisting.stored_job(clients.next_height())
    known, unknown = solution_delivery(task), solution_delivery(uuid.uuid4())
    with pytest.raises(UnknownTask, match=f"unknown task {unknown.item.task_id}"):
        await persisting.persist(SOLUTIONS, [known, unknown])
    assert await persisting.produced() == [], "a failed batch broadcasts nothing"
    # The consumer then isolates the bad one: the known solution alone goes through once.
    await persisting.persist(SOLUTIONS, [known])
    await persisting.persist(SOLUTIONS, [known])
    records = await persisting.produced()
    assert [r["solution"] for r in records] == [known.item.solution]
    stored = "SELECT count(*) FROM solution WHERE task_id = ANY($1::uuid[])"
    assert await pool.fetchval(stored, [task, unknown.item.task_id]) == 1


async def test_accepted_objects_read_back_from_jsonb_as_sent(
    settings: ConsumerSettings,
) -> None:
    """What `POST /api/jobs` polls and re-sent jobs read: the object, key order aside."""
    sample: list[Pairs] = []

    @hypothesis.settings(max_examples=80, deadline=None, database=None)
    @hypothesis.given(json_text.objects)
    def collect(tree: Pairs) -> None:
        if problem(tree) is None:
            sample.append(tree)

    collect()
    assert sample
    async with create_pool(settings.postgres_dsn.get_secret_value(), size=1) as pool:
        for tree in sample:
            frame = b'{"epoch_challenge": %s, "proof_target": 1, "block_height": 1}'
            sent = parse(NodeJob, frame % render(tree).encode()).epoch_challenge
            # Our codec both ways. Integers keep their value exactly; jsonb stores a float as
            # the decimal of its shortest form, which reads back as the same float (1e19 may
            # come back as 10**19).
            assert same(await pool.fetchval("SELECT $1::jsonb", sent), plain(tree))


def same(read: Any, sent: Any) -> bool:
    """Equal, where a float sent may read back as the integer its decimal form spells."""
    if isinstance(sent, dict):
        return (
            isinstance(read, dict)
            and read.keys() == sent.keys()
            and all(same(read[key], value) for key, value in sent.items())
        )
    if isinstance(sent, list):
        return (
            isinstance(read, list)
            and len(read) == len(sent)
            and all(same(r, s) for r, s in zip(read, sent, strict=True))
        )
    if isinstance(sent, float) and not isinstance(read, bool):
        return isinstance(read, int | float) and float(read) == sent
    return type(read) is type(sent) and read == sent


async def test_a_share_is_stored_and_marked_but_only_what_a_node_may_want_is_produced(
    persisting: Persisting,
) -> None:
    pool = persisting.pool
    task = await persisting.stored_job(clients.next_height())
    share, candidate = solution_delivery(task, 99), solution_delivery(task, 100)
    await pool.execute("UPDATE job SET proof_target = 100 WHERE task_id = $1", task)
    await persisting.persist(SOLUTIONS, [share, candidate])
    records = await persisting.produced()
    assert [r["solution"] for r in records] == [candidate.item.solution]
    rows = await pool.fetch(
        "SELECT solution_target, created_at, broadcast_at FROM solution"
        " WHERE task_id = $1 ORDER BY solution_target",
        task,
    )
    assert [row["solution_target"] for row in rows] == [99, 100]
    # The share was marked by the statement that stored it (one write); the
    # candidate once Kafka had it.
    assert rows[0]["broadcast_at"] == rows[0]["created_at"]
    assert rows[1]["broadcast_at"] > rows[1]["created_at"]


async def test_a_solution_stored_but_not_broadcast_before_is_found_and_produced_once(
    persisting: Persisting,
) -> None:
    """The other lane (or a batch that crashed before producing) stored it: the
    insert skips it, the lookup finds it, and it is produced with the new one."""
    pool = persisting.pool
    task = await persisting.stored_job(clients.next_height())
    earlier, new = solution_delivery(task, 5), solution_delivery(task, 5)
    async with pool.acquire() as connection:
        await SOLUTIONS.store(connection, [earlier.item])  # stored, not produced
    await persisting.persist(SOLUTIONS, [earlier, new])
    await persisting.persist(SOLUTIONS, [earlier, new])  # redelivered
    records = await persisting.produced()
    assert sorted(r["solution"]["partial_solution"]["nonce"] for r in records) == sorted(
        d.item.nonce for d in (earlier, new)
    )
    unmarked = "SELECT count(*) FROM solution WHERE task_id = $1 AND broadcast_at IS NULL"
    assert await pool.fetchval(unmarked, task) == 0
