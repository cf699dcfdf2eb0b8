"""The error catalogue: every failure has one answer, and `transient` sorts causes."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError
from aiormq.exceptions import ChannelInvalidStateError, ConnectionClosed
from prometheus_client import REGISTRY

from shared.errors import (
    ANSWERS,
    INTERNAL,
    BrokerUnavailable,
    Close,
    DatabaseUnavailable,
    DependencyUnavailable,
    ErrorCode,
    EventStreamUnavailable,
    PublishRefused,
    answer,
    count,
    down_as,
    transient,
    unavailable,
)

DEPENDENCIES = {"postgres", "rabbitmq", "kafka"}


def _subclasses(kind: type) -> set[type]:
    found = set(kind.__subclasses__())
    return found.union(*(_subclasses(sub) for sub in found))


def test_every_dependency_failure_has_a_complete_answer() -> None:
    assert _subclasses(DependencyUnavailable) <= set(ANSWERS)
    for kind, reply in ANSWERS.items():
        assert isinstance(reply.close, Close) and reply.close == Close.UNAVAILABLE, kind
        assert reply.status == 503 and reply.code == ErrorCode.UNAVAILABLE, kind
        assert reply.dependency in DEPENDENCIES, kind
        assert reply.close_reason(kind("cause", subject="job")), kind
        assert reply.http_detail(kind("cause", subject="job")), kind


def test_a_bug_is_internal_and_not_counted_as_a_dependency() -> None:
    assert answer(RuntimeError("bug")) is INTERNAL
    assert answer(OSError("raw, unattributed")) is INTERNAL
    assert (INTERNAL.close, INTERNAL.reason, INTERNAL.status) == (1011, "internal error", 500)
    assert INTERNAL.dependency is None


@pytest.mark.parametrize(
    ("failure", "reason", "detail", "dependency"),
    [
        (
            PublishRefused("no confirm", subject="job"),
            "job not accepted: broker unavailable",
            "job not accepted: broker unavailable",
            "rabbitmq",
        ),
        (
            PublishRefused("not connected", subject="solution"),
            "solution not accepted: broker unavailable",
            "solution not accepted: broker unavailable",
            "rabbitmq",
        ),
        (
            DatabaseUnavailable("down"),
            "database unavailable",
            "the database is unavailable, retry later",
            "postgres",
        ),
        (EventStreamUnavailable("down"), "event stream unavailable", None, "kafka"),
    ],
)
def test_what_clients_are_told(
    failure: DependencyUnavailable, reason: str, detail: str | None, dependency: str
) -> None:
    reply = answer(failure)
    assert reply.close_reason(failure) == reason
    if detail is not None:
        assert reply.http_detail(failure) == detail
    assert reply.dependency == dependency


@pytest.mark.parametrize(
    "error",
    [
        OSError("refused"),
        ConnectionResetError(),
        TimeoutError(),
        KafkaConnectionError(),
        ConnectionClosed(320, "shutdown"),
        ChannelInvalidStateError("closed"),
        asyncpg.CannotConnectNowError("starting up"),
        asyncpg.TooManyConnectionsError("full"),
        asyncpg.SerializationError("retry"),
        asyncpg.DeadlockDetectedError("retry"),
        asyncpg.ReadOnlySQLTransactionError("failover"),
        asyncpg.AdminShutdownError("failover"),
        asyncpg.InsufficientPrivilegeError("revoked"),
        asyncpg.LockNotAvailableError("lock_timeout"),
        asyncpg.InvalidPasswordError("rotated"),
        asyncpg.DiskFullError("disk full"),
        asyncpg.QueryCanceledError("statement_timeout"),
        asyncpg.UndefinedTableError("not migrated yet"),
        asyncpg.InterfaceError("connection closed"),
        DatabaseUnavailable("down"),
    ],
)
def test_transient_errors(error: BaseException) -> None:
    assert transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad data"),
        KeyError("bug"),
        RuntimeError("bug"),
        asyncpg.UniqueViolationError("duplicate"),
        asyncpg.DataError("bad value"),
        asyncpg.NumericValueOutOfRangeError("too large"),
        asyncpg.ForeignKeyViolationError("no such task"),
        asyncpg.CheckViolationError("refused by a constraint"),
    ],
)
def test_not_transient_errors(error: BaseException) -> None:
    assert not transient(error)


def test_unavailable_names_the_dependency() -> None:
    assert isinstance(unavailable(OSError(), DatabaseUnavailable), DatabaseUnavailable)
    assert isinstance(unavailable(OSError(), BrokerUnavailable), BrokerUnavailable)
    kafka = unavailable(KafkaConnectionError(), DatabaseUnavailable)
    assert isinstance(kafka, EventStreamUnavailable)
    amqp = unavailable(ConnectionClosed(320, "x"), DatabaseUnavailable)
    assert isinstance(amqp, BrokerUnavailable)
    refused = PublishRefused("x", subject="job")
    assert unavailable(refused, DatabaseUnavailable) is refused
    assert unavailable(ValueError(), DatabaseUnavailable) is None


async def test_down_as_translates_only_dependency_failures() -> None:
    @down_as(DatabaseUnavailable)
    async def query(error: Exception) -> None:
        raise error

    with pytest.raises(DatabaseUnavailable) as caught:
        await query(ConnectionRefusedError("nobody listening"))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    with pytest.raises(ValueError):
        await query(ValueError("a bug"))
    with pytest.raises(EventStreamUnavailable):
        async with down_as(DatabaseUnavailable):
            raise KafkaConnectionError()


def _counted(dependency: str) -> float:
    return REGISTRY.get_sample_value("wspool_broker_errors_total", {"broker": dependency}) or 0.0


def test_count_uses_the_catalogue_label() -> None:
    before = {d: _counted(d) for d in DEPENDENCIES}
    count(DatabaseUnavailable("down"))
    count(PublishRefused("x", subject="job"))
    count(EventStreamUnavailable)
    count(RuntimeError("a bug is not a dependency error"))
    assert {d: _counted(d) - before[d] for d in DEPENDENCIES} == dict.fromkeys(DEPENDENCIES, 1.0)
