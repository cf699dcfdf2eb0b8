"""Several processes of one service on one port: the supervisor, and what a child does.

With `processes` > 1, `python -m <service>` starts that many copies of itself
(each marked by `WSPOOL_PROCESS_INDEX`) and only watches them: it forwards
SIGTERM/SIGINT, restarts a child that ends unexpectedly, and owns the
directory where the children's Prometheus metrics meet. Each child binds the
same ports with SO_REUSEPORT and the kernel spreads connections across them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from shared.backoff import HEALTHY_RUN_SECONDS, Backoff

PROCESS_INDEX = "WSPOOL_PROCESS_INDEX"
SUPERVISOR_PID = "WSPOOL_SUPERVISOR_PID"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# A child that cannot bind its ports exits with this, so the supervisor can tell it apart.
CANNOT_LISTEN_EXIT = 3
# A child's own graceful shutdown has the service's deadline; this covers the rest
# (cancelling leftover tasks, interpreter exit) before the supervisor kills it.
STOP_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


def process_index() -> int | None:
    """This child's index, or None in a process that is not a supervised child."""
    value = os.environ.get(PROCESS_INDEX)
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class Usage:
    """What /proc says of one process."""

    parent: int
    cpu_seconds: float  # user + system
    resident_bytes: int


TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def usage(pid: int | str) -> Usage:
    """A process's parent, CPU time and memory; OSError when it has ended."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    statm = Path(f"/proc/{pid}/statm").read_text()
    # After the command name (in parentheses, may hold spaces): state, ppid, ...
    fields = stat.rpartition(")")[2].split()
    return Usage(
        parent=int(fields[1]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / TICKS,
        resident_bytes=int(statm.split()[1]) * PAGE,
    )


def die_with_parent() -> None:
    """Have the kernel send SIGTERM (a graceful stop) when the supervisor dies, even of SIGKILL.

    Checked once more afterwards: a supervisor that died while this child was
    still starting would otherwise leave it running with nobody to stop it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    supervisor = os.environ.get(SUPERVISOR_PID)
    if supervisor is not None and os.getppid() != int(supervisor):
        raise SystemExit(0)


@dataclass
class Child:
    index: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5))


class Supervisor:
    """Runs `python -m module` once per entry of `extra_env` until asked to stop."""

    def __init__(self, module: str, extra_env: list[dict[str, str]], stop_seconds: float) -> None:
        self.module = module
        self.stop_seconds = stop_seconds + STOP_MARGIN_SECONDS
        self.children = [Child(i, env) for i, env in enumerate(extra_env)]
        self.metrics_dir = ""
        self.stop_signal: signal.Signals | None = None

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT: 0 after a clean stop, 1 when the service cannot run."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.metrics_dir = tempfile.mkdtemp(prefix="wspool-metrics-")
        try:
            for child in self.children:
                self._start(child)
            log.info("supervising", extra={"processes": len(self.children)})
            failed = self._watch()
            return self._stop() or failed
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum)
        else:
            log.info("already_stopping", extra={"signal": signal.Signals(signum).name})

    def _start(self, child: Child) -> None:
        env = {
            **os.environ,
            **child.env,
            PROCESS_INDEX: str(child.index),
            SUPERVISOR_PID: str(os.getpid()),
            MULTIPROC_DIR: self.metrics_dir,
        }
        # The same command line: settings given as flags reach every child.
        command = [sys.executable, "-m", self.module, *sys.argv[1:]]
        child.process = subprocess.Popen(command, env=env)
        child.started_at = time.monotonic()
        child.starts += 1
        child.restart_at = None

    def _watch(self) -> int:
        """Restart children that end until a stop signal; 1 if one cannot listen at first."""
        while self.stop_signal is None:
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self._start(child)
                    continue
                assert child.process is not None
                code = child.process.poll()
                if code is None:
                    continue
                self._ended(child, code)
                if code == CANNOT_LISTEN_EXIT and child.starts == 1:
                    log.error("cannot_run", extra={"index": child.index})
                    return 1
                if now - child.started_at > HEALTHY_RUN_SECONDS:
                    child.backoff.reset()  # it served a while: a new failure, not the same one
                child.restart_at = now + child.backoff.next_delay()
            time.sleep(POLL_SECONDS)
        log.info("stopping", extra={"signal": self.stop_signal.name})
        return 0

    def _ended(self, child: Child, code: int) -> None:
        assert child.process is not None
        pid = child.process.pid
        log.warning("child_exited", extra={"index": child.index, "pid": pid, "exit_code": code})
        mark_process_dead(pid, self.metrics_dir)

    def _stop(self) -> int:
        """Signal every running child once, wait for them, kill what outlives the deadline."""
        signum = self.stop_signal or signal.SIGTERM
        running = [c.process for c in self.children if c.restart_at is None and c.process]
        running = [p for p in running if p.poll() is None]
        for process in running:
            process.send_signal(signum)
        deadline = time.monotonic() + self.stop_seconds
        clean = True
        for process in running:
            try:
                code = process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("child_killed", extra={"pid": process.pid})
                process.kill()
                code = process.wait()
            clean = clean and code == 0
        return 0 if clean else 1


def supervise(module: str, extra_env: list[dict[str, str]], stop_seconds: float) -> int:
    """Run the children of `python -m module`; the supervisor's exit code."""
    return Supervisor(module, extra_env, stop_seconds).run()
