"""Private instances the fault tests own and may break: Postgres, RabbitMQ, Tansu, services.

Nothing here touches the machine's shared Postgres or RabbitMQ: each instance
runs from its own directory on free ports and is stopped by its owner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from misc.tansu import start_tansu, wait_for_port
from tests.support.poll import until
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 60


def _postgres_bin() -> Path:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return versions[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    """Postgres refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PrivatePostgres:
    """A throw-away cluster (trust auth, fsync off) on a free port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.bin = _postgres_bin()
        root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "postgres", str(root)], check=True)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/wspool"

    def _run(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bin / args[0]), *args[1:]]),
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            cwd=self.root,
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        status = subprocess.run(
            _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            cwd=self.root,
        )
        return status.returncode == 0


class PrivateRabbit:
    """A second RabbitMQ node: its own node name, ports, data, cookie and no plugins."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = f"wspool{os.getpid()}x{time.time_ns() % 10**6}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        root.mkdir(parents=True, exist_ok=True)
        cookie = root / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(f"WSPOOLTEST{time.time_ns()}")
            cookie.chmod(0o400)
        (root / "enabled_plugins").write_text("[].\n")
        (root / "rabbitmq-env.conf").write_text("")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self, dist_port: int) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root),  # where both server and CLI find the cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_BASE": str(self.root),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "ERL_CRASH_DUMP": str(self.root / "erl_crash.dump"),  # not in the working directory
        }

    def start(self) -> None:
        """Start the node (new ports if the first ones turn out taken) and wait for it."""
        for _ in range(3):
            self.port = self.port or free_port()
            (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
            self.process = subprocess.Popen(
                ["/usr/lib/rabbitmq/bin/rabbitmq-server"],
                env=self._env(free_port()),
                stdout=open(self.root / "server.log", "ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if self._await_startup():
                return
            self._kill()
            self.port = 0
        raise RuntimeError(f"private RabbitMQ did not start; see {self.root}/server.log")

    def _await_startup(self, timeout: float = 90.0) -> bool:
        """True once the node is booted; False if it died (e.g. a port was taken)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process and self.process.poll() is None:
            try:
                self.ctl("await_startup", "--timeout", "60")
                return True
            except subprocess.CalledProcessError:  # not registered with epmd yet
                time.sleep(0.5)
        return False

    def _kill(self) -> None:
        """The server script starts the Erlang VM as a child: signal the whole group."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def ctl(self, *args: str) -> str:
        result = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-q", "-n", self.node, *args],
            env=self._env(0),
            check=True,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        return result.stdout

    def stop_app(self) -> None:
        """The broker goes away (every connection dropped); the Erlang node stays."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")

    def consumers(self, queue: str) -> int:
        for line in self.ctl("list_queues", "name", "consumers").splitlines():
            name, _, count = line.rpartition("\t")
            if name == queue:
                return int(count)
        return 0

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.ctl("stop")
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self._kill()


class PrivateTansu:
    """The test's own Tansu, killed and restarted on the same port (memory storage).

    `advertised_port`: a proxy's port the broker names to clients instead of its own.
    """

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.advertised_port: int | None = None
        self.log = root / "tansu.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_tansu(self.port, self.log, self.advertised_port)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class Service:
    """One `python -m <service>` subprocess with settings from the environment."""

    def __init__(
        self, name: str, env: dict[str, str], port: int, log: Path, internal_port: int | None
    ) -> None:
        self.name = name
        self.env = env
        self.port = port
        # Health, metrics and the API; the consumers serve them on `port`.
        self.internal_port = internal_port or port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.name],
            env=self.env,
            cwd=ROOT,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )

    def signal(self, signum: int) -> None:
        assert self.process is not None and self.process.poll() is None, f"{self.name} not running"
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def exited(self, timeout: float) -> int:
        """Wait (bounded) for the process to end; its exit code."""
        assert self.process is not None
        return await until(self.process.poll, lambda code: code is not None, timeout=timeout)

    async def readyz(self) -> int:
        """HTTP status of /readyz, 0 when nothing answers."""
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{self.http}/readyz", timeout=5) as response:
                    return response.status
        except (aiohttp.ClientError, TimeoutError):
            return 0

    async def ready(self, timeout: float = 60.0) -> None:
        async def answer() -> int:
            assert self.process is not None
            assert self.process.poll() is None, f"{self.name} exited; see {self.log}"
            return await self.readyz()

        await until(answer, lambda got: got == 200, timeout=timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def stopped_on_exit(*owners: object) -> Iterator[None]:
    """Stop/kill every owner (in reverse) when the block ends, whatever happened."""
    try:
        yield
    finally:
        for owner in reversed(owners):
            for method in ("kill", "stop"):
                with contextlib.suppress(Exception):
                    if hasattr(owner, method):
                        getattr(owner, method)()
                        break


__all__ = ["PrivatePostgres", "PrivateRabbit", "PrivateTansu", "Service", "wait_for_port"]
