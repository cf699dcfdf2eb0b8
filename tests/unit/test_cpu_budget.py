"""The benchmark's CPU budget reads what each program spent from /proc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from misc.bench.cpu_budget import budget, program
from tests.support.poll import until_sync


def test_a_module_run_with_dash_m_is_named_by_its_module() -> None:
    child = subprocess.Popen([sys.executable, "-m", "http.server", "0", "-b", "127.0.0.1"])
    try:
        # Until the fork has exec'd the interpreter.
        name = until_sync(
            lambda: program(Path(f"/proc/{child.pid}")),
            lambda name: name == "http.server",
            timeout=10,
        )
        assert name == "http.server"
    finally:
        child.kill()
        child.wait()


def test_a_busy_program_shows_its_cores_and_an_idle_one_does_not_count() -> None:
    # A process of its own: this one's threads share a GIL with whatever else the
    # test session runs.
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"]
    )
    try:
        cores = budget(0.5)
        name = program(Path(f"/proc/{spinner.pid}"))
    finally:
        spinner.kill()
        spinner.wait()
    assert cores[name] > 0.1  # the spinning process (an idle one shows none)
    assert all(used > 0 for used in cores.values())  # idle programs are left out
