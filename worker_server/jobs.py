"""What worker_server fans out: job records decoded once, and the current job.

A Kafka record becomes a `JobUpdate` with its client frame already encoded,
so a broadcast encodes each frame once. `CurrentJob` holds the one job every
worker of the process is sent; a connection sends it whenever it changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass

import asyncpg

from shared.codec import parse_internal
from shared.current_job import nanoseconds, newest_job
from shared.errors import DatabaseUnavailable, ProtocolError, down_as
from shared.fanout.stream import Stream
from shared.metrics import CURRENT_JOB_HEIGHT, CURRENT_JOB_TIMESTAMP
from shared.protocol import CurrentJobRecord, JobRecord, job_frame
from shared.routes import JOB

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobUpdate:
    block_height: int  # -1 for a reset with no job left
    task_id: uuid.UUID | None
    frame: bytes  # empty for a reset with no job left
    received_at: int
    # A job made current again because a newer one was retired: it replaces the
    # current job whatever its height.
    reset: bool = False
    # The lowest proof target waiting at this height (None: not known).
    proof_target: int | None = None
    # Postgres's clock (ns): when the job was stored, or when a retire read the job
    # it makes current. What orders updates against the load and against each other.
    as_of: int = 0


def job_update(record: JobRecord) -> JobUpdate:
    return JobUpdate(
        record.block_height,
        record.task_id,
        job_frame(record),
        record.received_at,
        proof_target=record.proof_target,
        as_of=nanoseconds(record.created_at),
    )


def decode_job(value: bytes) -> JobUpdate:
    """A job, or (a record naming the job it `retired`) the job that is current again."""
    try:
        record = parse_internal(JobRecord, value)
    except ProtocolError:  # not a job: then it must say which job is current (rare)
        reset = parse_internal(CurrentJobRecord, value)
    else:
        return job_update(record)
    at = reset.received_at  # when the retire read the job it makes current
    if reset.current is None:
        return JobUpdate(-1, None, b"", at, reset=True, as_of=at)
    return dataclasses.replace(job_update(reset.current), received_at=at, reset=True, as_of=at)


class CurrentJob:
    """The job every worker of one worker_server app is sent now.

    Loaded from Postgres at start-up: the newest job not retired. Then kept in
    step with the fan-out: a job above the current height replaces it, and a
    retire's reset replaces it whatever its height (it may lower it). What Kafka
    still holds from before (the last record replayed at start-up, a log read
    again after the broker lost it) is history that the load, or a later reset,
    already accounts for: an update older than `as_of` changes nothing. A job
    below the current height never becomes current (it is stored all the same).
    """

    def __init__(self) -> None:
        self.job: JobUpdate | None = None
        self.as_of = 0  # of the load or the reset that set the current job, as JobUpdate.as_of
        self.loaded = asyncio.Event()

    def observe(self, update: JobUpdate) -> None:
        """Every record either fan-out mode decodes; must not block."""
        if update.reset:
            if update.as_of <= self.as_of:
                return  # this reset again, or one the load or a later reset accounts for
            self.as_of = update.as_of
        elif update.as_of < self.as_of or (
            self.job is not None and update.block_height <= self.job.block_height
        ):
            return
        self._become(update)

    async def load(self, pool: asyncpg.Pool) -> None:
        """Read the current job from Postgres; `DatabaseUnavailable` while it is away."""
        async with down_as(DatabaseUnavailable):
            record, as_of = await newest_job(pool)
        self.from_postgres(None if record is None else job_update(record), as_of)
        log.info("current_job_loaded", extra={"block_height": self.height})

    def from_postgres(self, newest: JobUpdate | None, as_of: int) -> None:
        """The newest job not retired as Postgres had it at `as_of`: now current, unless
        a retire read later says otherwise, or a job stored since is higher."""
        if as_of > self.as_of:
            seen, self.as_of = self.job, as_of
            self._become(newest)
            if seen is not None and not seen.reset:
                self.observe(seen)
        self.loaded.set()

    async def wait_loaded(self, timeout: float) -> None:
        """Return once loaded; `DatabaseUnavailable` after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self.loaded.wait()
        except TimeoutError:
            raise DatabaseUnavailable("the current job is not loaded from Postgres yet") from None

    @property
    def height(self) -> int | None:
        return None if self.job is None else self.job.block_height

    def _become(self, update: JobUpdate | None) -> None:
        self.job = update if update is not None and update.frame else None
        if update is not None:  # a reset with no job left shows as height -1
            CURRENT_JOB_HEIGHT.set(update.block_height)
            CURRENT_JOB_TIMESTAMP.set(update.received_at / 1e9)


def job_stream(current: CurrentJob) -> Stream[JobUpdate]:
    """Topic `job` as one app reads it: `current` is told of every record."""
    # The last record is replayed on joining: in per_connection mode the nudge that has
    # a connection send a job that became current while its consumer was starting.
    return Stream(JOB.topic, decode_job, replay_last=True, observe=current.observe)
