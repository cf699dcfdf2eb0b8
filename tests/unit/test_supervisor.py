"""shared.runtime.supervisor: each child gets its own environment and the parent's flags."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.instances import ROOT
from tests.support.poll import until_sync

SUPERVISOR = """
import sys
from shared.runtime.supervisor import supervise
sys.exit(supervise("tests.support.env_child", [{"ROLE": "candidates"}, {}, {}], 5.0))
"""


def test_each_child_gets_its_extra_environment_and_sigterm_stops_all(tmp_path: Path) -> None:
    # `tmp_path` is the supervisor's only flag: the children get it as theirs.
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(tmp_path)], cwd=ROOT)
    try:
        until_sync(lambda: len(list(tmp_path.glob("[0-9]"))), lambda count: count >= 3, timeout=30)
        roles = {path.name: path.read_text() for path in tmp_path.glob("[0-9]")}
        assert roles == {"0": "candidates", "1": "", "2": ""}
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=15) == 0
    finally:
        supervisor.kill()  # its children end with it
        supervisor.wait()
