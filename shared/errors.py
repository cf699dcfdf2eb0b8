"""The closed catalogue of failures, and the one map from each to what clients see.

Three kinds of trouble reach a client: its own mistake (`ProtocolError`, an
error frame and the connection stays open), a dependency that is down (a
`DependencyUnavailable`: 1011 on a websocket, 503 over HTTP, counted in
`wspool_broker_errors_total`), and a bug of ours (1011 "internal error", logged
with its traceback). `answer(error)` says which, in one place, for the
websocket, REST and consumer paths alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import IntEnum, StrEnum

import asyncpg
from aiokafka.errors import KafkaError
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from shared.metrics import DEPENDENCY_ERRORS


class Close(IntEnum):
    """Close codes clients see (docs/protocol.md)."""

    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    UNAVAILABLE = 1011
    INVALID_WELCOME = 3000


class ErrorCode(StrEnum):
    """`code` of error frames (and of the JSON body of a refused REST job)."""

    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TASK = "unknown_task"
    CONFLICTING_JOB = "conflicting_job"  # another challenge holds the job's height
    IMPLAUSIBLE_HEIGHT = "implausible_height"  # far above the newest job
    RATE_LIMITED = "rate_limited"  # a worker over a solution limit; not published
    DUPLICATE_SOLUTION = "duplicate_solution"  # the same task and nonce again
    BANNED = "banned"  # the worker (or its address) is banned; the close follows
    UNAVAILABLE = "unavailable"
    OVERLOADED = "overloaded"  # a share refused while the server is behind; send it again
    INTERNAL = "internal_error"


class CloseConnection(Exception):
    """Raised inside a handler to close the connection with a code and reason."""

    def __init__(self, code: Close, reason: str) -> None:
        super().__init__(f"{int(code)} {reason}")
        self.code = code
        self.reason = reason


class ProtocolError(Exception):
    """A client (or upstream) message we refuse; `code` goes on the wire."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class DependencyUnavailable(Exception):
    """A dependency did not answer: what the client sent was not accepted; retry later.

    `subject` names what was refused where the answer says so (a job, a solution).
    """

    def __init__(self, detail: str, subject: str = "") -> None:
        super().__init__(detail)
        self.subject = subject


class DatabaseUnavailable(DependencyUnavailable):
    """Postgres is down, unreachable or refusing work."""


class BrokerUnavailable(DependencyUnavailable):
    """RabbitMQ is down or unreachable."""


class PublishRefused(BrokerUnavailable):
    """RabbitMQ did not confirm a publish (or is not connected): the client must be told."""


class EventStreamUnavailable(DependencyUnavailable):
    """Kafka could not be joined (down, or the topic is missing)."""


# Errors that mean a dependency is down, not that the request or message is bad.
DEPENDENCY_DOWN: tuple[type[BaseException], ...] = (
    DependencyUnavailable,
    OSError,  # ConnectionError and refused or reset sockets included
    TimeoutError,  # asyncio's too
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # A connection broken in the middle of a query (Postgres restarting) can
    # surface as "cannot switch to state ...": the connection's fault, not the query's.
    asyncpg.exceptions.InternalClientError,
    KafkaError,
    AMQPError,  # aio_pika.exceptions.AMQPException is this class
    ChannelInvalidStateError,  # publishing on a channel that just closed
)
# shared.kafka raises LookupError for a topic that does not exist (run the setup):
# for a fan-out that is the event stream being unavailable, and retried.
EVENT_STREAM_DOWN: tuple[type[BaseException], ...] = (*DEPENDENCY_DOWN, LookupError)
# SQLSTATEs (five characters) and classes (their first two) that are about the
# database, not the message: every message would meet them alike, so they are an
# outage to wait out (retried with backoff, never dead-lettered). The one list;
# docs/reliability.md explains it. Anything else from Postgres belongs to the message.
TRANSIENT_SQLSTATES: dict[str, str] = {
    "08": "connection exception",
    "25006": "read_only_sql_transaction: a standby, or a primary during a failover",
    "28": "invalid authorization: credentials changed or revoked under a running service",
    "3D000": "invalid_catalog_name: the database is not there (yet)",
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "42501": "insufficient_privilege: a grant missing, for every message alike",
    "42P01": "undefined_table: the schema is behind the code (migrations not applied yet)",
    "42703": "undefined_column: likewise",
    "53": "insufficient resources: disk full, out of memory, too many connections",
    "55P03": "lock_not_available: lock_timeout expired",
    "57": "operator intervention: statement timeout or cancel, shutdown, starting up",
    "58": "system error: I/O error",
}


def transient_sqlstate(state: str | None) -> bool:
    """True when a Postgres error with this SQLSTATE is about the database (see above)."""
    return bool(state) and (state in TRANSIENT_SQLSTATES or state[:2] in TRANSIENT_SQLSTATES)


def transient(error: BaseException) -> bool:
    """True when retrying later may succeed: the dependency failed, not the message."""
    if isinstance(error, DEPENDENCY_DOWN):
        return True
    return isinstance(error, asyncpg.PostgresError) and transient_sqlstate(
        getattr(error, "sqlstate", None)
    )


# Whose a library's error is; OSError and timeouts are the caller's dependency's.
_OWNERS: tuple[tuple[tuple[type[BaseException], ...], type[DependencyUnavailable]], ...] = (
    ((KafkaError,), EventStreamUnavailable),
    ((AMQPError, ChannelInvalidStateError), BrokerUnavailable),
    (
        (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError),
        DatabaseUnavailable,
    ),
)


def unavailable(
    error: BaseException, kind: type[DependencyUnavailable]
) -> DependencyUnavailable | None:
    """`error` as a catalogue failure, or None when it does not mean a dependency is down.

    Library errors name their dependency; a bare OSError or timeout is taken
    to come from `kind`, the dependency the caller was talking to.
    """
    if isinstance(error, DependencyUnavailable):
        return error
    if not transient(error):
        return None
    owner = next((o for classes, o in _OWNERS if isinstance(error, classes)), kind)
    return owner(f"{type(error).__name__}: {error}")


@contextlib.asynccontextmanager
async def down_as(kind: type[DependencyUnavailable]) -> AsyncIterator[None]:
    """Inside, an error that means the dependency is down is raised again as `kind`.

    Also a decorator for coroutine functions that talk to one dependency.
    """
    try:
        yield
    except Exception as error:
        failure = unavailable(error, kind)
        if failure is None or failure is error:
            raise
        raise failure from error


@dataclass(frozen=True, slots=True)
class Answer:
    """What a client sees for a failure, and how operators count it."""

    close: Close
    reason: str  # close reason; `{subject}` is filled in from the error
    status: int  # HTTP
    code: ErrorCode  # error frame / JSON `error`
    detail: str  # JSON `detail`; `{subject}` as for `reason`
    dependency: str | None  # label of wspool_broker_errors_total; None: not counted there

    def close_reason(self, error: BaseException) -> str:
        return self.reason.format(subject=getattr(error, "subject", ""))

    def http_detail(self, error: BaseException) -> str:
        return self.detail.format(subject=getattr(error, "subject", ""))


REFUSED_PUBLISH = "{subject} not accepted: broker unavailable"
INTERNAL = Answer(
    Close.UNAVAILABLE, "internal error", 500, ErrorCode.INTERNAL, "internal error", None
)
# The label values stay those dashboards already use; `postgres` is the database.
ANSWERS: dict[type[Exception], Answer] = {
    DatabaseUnavailable: Answer(
        Close.UNAVAILABLE,
        "database unavailable",
        503,
        ErrorCode.UNAVAILABLE,
        "the database is unavailable, retry later",
        "postgres",
    ),
    BrokerUnavailable: Answer(
        Close.UNAVAILABLE,
        "broker unavailable",
        503,
        ErrorCode.UNAVAILABLE,
        "the broker is unavailable, retry later",
        "rabbitmq",
    ),
    PublishRefused: Answer(
        Close.UNAVAILABLE, REFUSED_PUBLISH, 503, ErrorCode.UNAVAILABLE, REFUSED_PUBLISH, "rabbitmq"
    ),
    EventStreamUnavailable: Answer(
        Close.UNAVAILABLE,
        "event stream unavailable",
        503,
        ErrorCode.UNAVAILABLE,
        "the event stream is unavailable, retry later",
        "kafka",
    ),
}


def export_dependency_errors() -> None:
    """Export each dependency's error count at 0, at a service's start.

    An alert on increase() then sees the first failure, instead of a series
    appearing from nothing.
    """
    for each in ANSWERS.values():
        if each.dependency is not None:
            DEPENDENCY_ERRORS.labels(broker=each.dependency)


def answer(error: BaseException | type[BaseException]) -> Answer:
    """The catalogue's answer to `error`; anything not in it is a bug (`INTERNAL`)."""
    kind = error if isinstance(error, type) else type(error)
    for cls in kind.__mro__:
        if cls in ANSWERS:
            return ANSWERS[cls]
    return INTERNAL


def count(failure: BaseException | type[BaseException]) -> None:
    """Count a dependency failure (or its class) in wspool_broker_errors_total.

    Bugs and raw library errors are not counted: pass them through
    `unavailable` first.
    """
    dependency = answer(failure).dependency
    if dependency is not None:
        DEPENDENCY_ERRORS.labels(broker=dependency).inc()
