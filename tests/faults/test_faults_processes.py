"""Fault injection on the services themselves: kill -9 and SIGTERM under load."""

from __future__ import annotations

import signal
import time

import pytest

from tests.support.accounting import assert_clean_logs, run_round
from tests.support.fault_stack import SHUTDOWN_TIMEOUT_SECONDS, FaultStack

pytestmark = pytest.mark.faults


async def test_kill_9_process_workers_mid_stream_loses_and_repeats_nothing(
    faults: FaultStack,
) -> None:
    stack = faults
    workers = [stack.services["process_job_worker"], stack.services["process_solution_worker"]]

    async def kill_and_restart() -> None:
        for worker in workers:
            worker.kill()
        for worker in workers:
            worker.start()
        for worker in workers:
            await worker.ready()

    figures, _ = await run_round(stack, "kill -9 process workers", kill_and_restart)
    assert figures.solutions_refused == 0 and figures.jobs_refused == 0
    assert_clean_logs(stack)


SERVICES = ["process_job_worker", "process_solution_worker", "worker_server", "node_server"]
CLIENT_CLOSE = {"worker_server": "worker_closes", "node_server": "node_closes"}


@pytest.mark.parametrize("name", SERVICES)
async def test_sigterm_under_load_closes_1001_exits_0_and_loses_nothing(
    faults: FaultStack, name: str
) -> None:
    stack = faults
    service = stack.services[name]
    exits: list[tuple[int, float]] = []

    async def terminate_and_restart() -> None:
        started = time.monotonic()
        service.signal(signal.SIGTERM)
        code = await service.exited(timeout=SHUTDOWN_TIMEOUT_SECONDS * 4)
        exits.append((code, time.monotonic() - started))
        service.start()
        await service.ready()

    figures, round_ = await run_round(
        stack,
        f"SIGTERM {name}",
        terminate_and_restart,
        solutions=300,
        jobs=30,
        fault_after=100,
    )
    [(code, seconds)] = exits
    print(f"{name} exited with {code} after {seconds:.2f} s")
    assert code == 0
    if name in CLIENT_CLOSE:
        assert 1001 in getattr(round_, CLIENT_CLOSE[name]), "listening clients were not told 1001"
    else:
        assert figures.solutions_refused == 0 and figures.jobs_refused == 0
    assert set(figures.close_codes) <= {1001}
    assert_clean_logs(stack)
