"""A stand-in service for supervisor tests: `python -m tests.support.env_child <dir>`.

Writes the `ROLE` its supervisor gave it to `<dir>/<index>`, then waits for SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from shared.runtime.supervisor import PROCESS_INDEX, die_with_parent

if __name__ == "__main__":
    die_with_parent()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    written = Path(sys.argv[1], f"{os.getpid()}.tmp")
    written.write_text(os.environ.get("ROLE", ""))
    written.rename(written.with_name(os.environ[PROCESS_INDEX]))  # whole, or not there yet
    while True:
        signal.pause()
