"""Run the whole system locally: Tansu, setup, the four services; Ctrl-C stops it all.

    python -m misc.run_local_stack [--kafka-port N] [--port-offset N] [--logs DIR]

Postgres and RabbitMQ are the ones the settings name (defaults: 127.0.0.1);
Kafka is an embedded Tansu broker started here. Prints where to connect.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg

from misc.tansu import dies_with_this_process, tansu
from shared.catalogue import NODE_SERVER, SERVICES, SETUP, WORKER_SERVER
from shared.settings import POSTGRES_DSN, RABBITMQ_URL

HOW_TO_START = (
    "start them (on this kind of machine they run as system services; elsewhere: "
    "`docker compose --profile environment up -d`) or point WSPOOL_POSTGRES_DSN / "
    "WSPOOL_RABBITMQ_URL at running ones"
)


def check_dependencies(dsn: str, amqp_url: str) -> str | None:
    """One readable line if Postgres or RabbitMQ can't be reached, else None."""

    async def probe() -> str | None:
        try:
            connection = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres", timeout=5)
            await connection.close()
        except Exception as error:
            return f"Postgres at {dsn} is unreachable ({type(error).__name__}: {error})"
        import aio_pika

        try:
            connection = await asyncio.wait_for(aio_pika.connect(amqp_url), 5)
            await connection.close()
        except Exception as error:
            return f"RabbitMQ at {amqp_url} is unreachable ({type(error).__name__}: {error})"
        return None

    return asyncio.run(probe())


def service_env(kafka: str, dsn: str, amqp_url: str, offset: int) -> dict[str, str]:
    env = dict(os.environ)
    for prefix in (SETUP.env_prefix, *(service.env_prefix for service in SERVICES.values())):
        env[f"{prefix}KAFKA_BOOTSTRAP_SERVERS"] = kafka
        env[f"{prefix}POSTGRES_DSN"] = dsn
        env[f"{prefix}RABBITMQ_URL"] = amqp_url
    for service in SERVICES.values():
        env[f"{service.env_prefix}PORT"] = str(service.port + offset)
        if service.internal_port:
            env[f"{service.env_prefix}INTERNAL_PORT"] = str(service.internal_port + offset)
        env[f"{service.env_prefix}HOST"] = "127.0.0.1"
    return env


def wait_ready(
    http_ports: dict[str, int], processes: dict[str, subprocess.Popen], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(http_ports)
    while pending:
        for name, port in list(pending.items()):
            if processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {processes[name].returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        del pending[name]
            except OSError:
                pass
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:g} s: {', '.join(pending)}")
        time.sleep(0.2)


def stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time; killing it", file=sys.stderr)
            process.kill()


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM stops the stack the way Ctrl-C does; a second signal must not cut it short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    parser = argparse.ArgumentParser(prog="python -m misc.run_local_stack", description=__doc__)
    parser.add_argument(
        "--kafka-port",
        type=int,
        default=int(os.environ.get("WSPOOL_KAFKA_PORT", 0)),
        help="port of the embedded Tansu broker (default: a free one)",
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="added to every service's default ports ("
        + ", ".join(
            str(port)
            for service in SERVICES.values()
            for port in (service.port, service.internal_port)
            if port
        )
        + ")",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        default=Path("artifacts/local_stack"),
        help="folder for each service's log file",
    )
    args = parser.parse_args()
    dsn = os.environ.get("WSPOOL_POSTGRES_DSN", POSTGRES_DSN)
    amqp_url = os.environ.get("WSPOOL_RABBITMQ_URL", RABBITMQ_URL)
    problem = check_dependencies(dsn, amqp_url)
    if problem:
        print(
            f"error: {problem}.\nwspool needs Postgres and RabbitMQ: {HOW_TO_START}.",
            file=sys.stderr,
        )
        return 1
    args.logs.mkdir(parents=True, exist_ok=True)
    offset = args.port_offset
    http_ports = {name: service.http_port + offset for name, service in SERVICES.items()}
    with tansu(args.kafka_port or None, args.logs / "tansu.log") as kafka:
        env = service_env(kafka, dsn, amqp_url, offset)
        setup = subprocess.run([sys.executable, "-m", SETUP.module], env=env)
        if setup.returncode != 0:
            return setup.returncode
        processes = {
            name: subprocess.Popen(
                [sys.executable, "-m", name],
                env=env,
                stdout=open(args.logs / f"{name}.log", "ab"),
                stderr=subprocess.STDOUT,
                # If this runner is killed, the services stop gracefully rather than linger.
                preexec_fn=dies_with_this_process(signal.SIGTERM),
            )
            for name in SERVICES
        }
        try:
            wait_ready(http_ports, processes, timeout=60)
            internal = f"http://127.0.0.1:{http_ports['node_server']}"
            print(
                "\nwspool is running.\n"
                f"  nodes connect to    ws://127.0.0.1:{NODE_SERVER.port + offset}/\n"
                f"  workers connect to  ws://127.0.0.1:{WORKER_SERVER.port + offset}/\n"
                f"  dashboard           {internal}/dashboard\n"
                f"  read API            {internal}/api/stats\n"
                f"  Kafka (Tansu)       {kafka}\n"
                f"  logs                {args.logs}/\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            while all(p.poll() is None for p in processes.values()):
                time.sleep(0.5)
            failed = [n for n, p in processes.items() if p.poll() is not None]
            print(f"error: {', '.join(failed)} stopped; see {args.logs}/", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)
            return 0
        except RuntimeError as error:
            print(f"error: {error}; see {args.logs}/", file=sys.stderr)
            return 1
        finally:
            stop(processes)


if __name__ == "__main__":
    raise SystemExit(main())
