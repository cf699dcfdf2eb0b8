"""shared.runtime.lifecycle.run in a process of its own: how it ends, and what it leaves behind."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.runtime.lifecycle import CANCEL_DEADLINE_SECONDS
from tests.support.instances import Service, stopped_on_exit
from tests.support.poll import until
from tests.support.ports import free_port

EXIT_TIMEOUT = 30.0


@contextmanager
def child(
    tmp_path: Path, leftover: str, event_loop: str = "uvloop", port: int = 0
) -> Iterator[Service]:
    """`tests.support.lifecycle_child`, started; killed when the block ends if still running."""
    port = port or free_port()
    env = {**os.environ, "PORT": str(port), "EVENT_LOOP": event_loop, "LEFTOVER": leftover}
    service = Service("tests.support.lifecycle_child", env, port, tmp_path / "child.log", None)
    with stopped_on_exit(service):
        service.start()
        yield service


def events(service: Service) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in service.log_text().splitlines() if line.startswith("{")]


def named(service: Service, event: str) -> list[dict[str, Any]]:
    return [entry for entry in events(service) if entry["event"] == event]


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_a_default_executor_job_is_finished_before_run_returns(
    tmp_path: Path, event_loop: str
) -> None:
    with child(tmp_path, "executor", event_loop) as service:
        await service.ready()
        service.signal(signal.SIGTERM)
        assert await service.exited(EXIT_TIMEOUT) == 0
    order = [entry["event"] for entry in events(service)]
    assert "job_finished" in order and "run_returned" in order, order
    # The runner shut the default executor down: the job's thread ended, joined, inside run.
    assert order.index("job_finished") < order.index("run_returned"), order
    assert named(service, "run_returned")[0]["threads"] == []


async def test_a_task_that_ignores_cancellation_is_named_and_the_service_still_exits(
    tmp_path: Path,
) -> None:
    with child(tmp_path, "deaf") as service:
        await service.ready()
        service.signal(signal.SIGINT)  # Ctrl-C, then the runner's SIGTERM, as in `make run`

        async def cancelled() -> bool:
            return bool(named(service, "cancel_ignored"))

        await until(cancelled, timeout=EXIT_TIMEOUT)
        service.signal(signal.SIGTERM)  # while it waits for the deaf task: only logged
        assert await service.exited(CANCEL_DEADLINE_SECONDS + EXIT_TIMEOUT) == 0
    assert [entry["signal"] for entry in named(service, "stopping")] == ["SIGINT"]
    assert [entry["signal"] for entry in named(service, "already_stopping")] == ["SIGTERM"]
    assert [entry["task"] for entry in named(service, "task_did_not_stop")] == ["deaf"]
    assert named(service, "run_returned")


async def test_a_port_taken_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with child(tmp_path, "executor", port=taken.getsockname()[1]) as service:
            assert await service.exited(EXIT_TIMEOUT) == 1
    assert len(named(service, "cannot_listen")) == 1
    assert "Traceback" not in service.log_text()
