"""Benchmark a wspool deployment with real websocket clients.

    python -m misc.bench [--workers 1,100,1000] [--modes shared,per_connection] [...]

Against a running stack (`make run`, or any --node-url/--worker-url), or, with
--own-stack (implied by --modes), against stacks it starts itself, one per
fan-out mode. Simulates W workers (spread over several processes and
127.0.x.1 source addresses, each a /24 block of its own) and one node;
measures worker ready time, job fan-out latency and delivery, solution round
trip, sustained solution throughput (offered / delivered / stored), server
memory and CPU, and, when asked, a reconnect storm and a soak of churning
workers. Prints
markdown tables; --json and --plot write the figures. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from misc.bench.facts import machine_facts, raise_fd_limit
from misc.bench.plan import LadderPlan, Plan
from misc.bench.plot import plot
from misc.bench.report import render
from misc.bench.run import run_stack
from misc.bench.stack import Endpoints, own_stack
from misc.bench.steps import say
from shared.settings import POSTGRES_DSN


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts must be positive")
    return counts


def _modes(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(modes) - {"shared", "per_connection"}
    if unknown or not modes:
        raise argparse.ArgumentTypeError("modes are shared and/or per_connection")
    return modes


def _rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates, got {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


PHASES = {"fanout", "solutions", "recovery", "ladder", "storm", "soak"}


def _phases(text: str) -> frozenset[str]:
    phases = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not phases or phases - PHASES:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(sorted(PHASES))}")
    return phases


def _add_ladder_args(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--phases",
        type=_phases,
        help="phases to run (default fanout,solutions,recovery, plus ladder with --ladder)",
    )
    add("--ladder", type=_rates, help="offered solutions/s per ladder step, e.g. 500,1000,2000")
    add("--step-seconds", type=float, default=10, help="seconds per ladder step")
    add("--ceiling-p99-ms", type=float, default=1000, help="p99 bound of a sustained step")
    add("--mixed-rate", type=float, default=0, help="shares/s of the mixed run (0: 2x ceiling)")
    add("--candidate-rate", type=float, default=20, help="candidates/s of the mixed run")
    add("--mixed-seconds", type=float, default=10, help="seconds of the mixed run (0: none)")


def _add_storm_args(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--storm-workers", type=_counts, help="workers of each storm, e.g. 1000,5000,10000")
    add("--storm-in-flight", type=int, default=1000, help="handshakes open at once in a storm")
    add("--soak-seconds", type=float, default=0, help="seconds of churning workers (0: none)")
    add("--soak-rate", type=float, default=200, help="worker connections a second in the soak")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m misc.bench", description=summary)
    add = parser.add_argument
    add("--workers", type=_counts, default=[1, 100, 1000], help="worker counts (1,100,1000)")
    add("--modes", type=_modes, help="fan-out modes to run, each in its own stack (own-stack)")
    add("--own-stack", action="store_true", help="start misc.run_local_stack per mode")
    add("--port-offset", type=int, default=300, help="port offset of an own stack (default 300)")
    local = Endpoints.local(0)  # the `make run` stack
    add("--node-url", default=local.node_url, help="node_server websocket URL")
    add("--worker-url", default=local.worker_url, help="worker_server websocket URL")
    add("--node-http", default=local.node_http, help="node_server internal port (API, metrics)")
    add("--worker-http", default=local.worker_http, help="worker_server internal port (metrics)")
    add("--job-worker-http", default=local.job_worker_http)
    add("--solution-worker-http", default=local.solution_worker_http)
    add(
        "--postgres-dsn",
        default=os.environ.get("WSPOOL_POSTGRES_DSN", POSTGRES_DSN),
        help="database the stack stores in, to count stored solutions",
    )
    add("--jobs", type=int, default=5, help="jobs sent per worker count (default 5)")
    add("--job-gap", type=float, default=0.5, help="seconds between jobs after delivery")
    add("--processes", type=int, default=4, help="client processes for the workers (default 4)")
    add(
        "--sources",
        type=int,
        default=64,
        help="source addresses 127.0.x.1, each its own /24 block (default 64)",
    )
    add(
        "--per-connection-max",
        type=int,
        default=1000,
        help="largest worker count tried in per_connection mode (a Kafka consumer each)",
    )
    add("--solution-workers", type=int, default=64, help="workers sending solutions")
    add("--rtt-rate", type=float, default=100, help="solutions/s for the round-trip figures")
    add("--rtt-seconds", type=float, default=5, help="duration of the round-trip run")
    add("--rate", type=float, default=5000, help="offered solutions/s for throughput")
    add("--duration", type=float, default=10, help="seconds of the throughput run")
    add("--drain-timeout", type=float, default=30, help="longest wait for deliveries")
    add("--recovery-rounds", type=int, default=20, help="node reconnects timed (0: none)")
    add(
        "--admin-token",
        default=os.environ.get("NODE_SERVER_ADMIN_TOKEN", ""),
        help="node_server's admin token, to retire the jobs sent ($NODE_SERVER_ADMIN_TOKEN)",
    )
    add("--json", type=Path, help="write all figures as JSON")
    add("--plot", type=Path, help="write fan-out percentiles vs workers as PNG (matplotlib)")
    add("--logs", type=Path, default=Path("artifacts/bench"), help="own stacks' logs")
    _add_ladder_args(parser)
    _add_storm_args(parser)
    args = parser.parse_args(argv)
    if args.phases is None:
        asked = {"ladder": args.ladder, "storm": args.storm_workers, "soak": args.soak_seconds}
        args.phases = frozenset(
            {"fanout", "solutions", "recovery", *(name for name, on in asked.items() if on)}
        )
    if "ladder" in args.phases and not args.ladder:
        parser.error("the ladder phase needs --ladder RATES")
    if "storm" in args.phases and not args.storm_workers:
        parser.error("the storm phase needs --storm-workers COUNTS")
    if "soak" in args.phases and args.soak_seconds <= 0:
        parser.error("the soak phase needs --soak-seconds SECONDS")
    if args.modes and len(args.modes) > 1:
        args.own_stack = True
    args.modes = args.modes or ["shared"]
    if not 1 <= args.sources <= 250:
        parser.error("--sources must be within 1..250")
    return args


def plan_from(args: argparse.Namespace) -> Plan:
    return Plan(
        workers=args.workers,
        jobs=args.jobs,
        job_gap=args.job_gap,
        processes=args.processes,
        # One address per /24: worker_server counts a whole block as one address.
        sources=[f"127.0.{2 + i}.1" for i in range(args.sources)],
        solution_workers=args.solution_workers,
        rtt_rate=args.rtt_rate,
        rtt_seconds=args.rtt_seconds,
        rate=args.rate,
        duration=args.duration,
        drain_timeout=args.drain_timeout,
        postgres_dsn=args.postgres_dsn,
        recovery_rounds=args.recovery_rounds,
        admin_token=args.admin_token,
        phases=args.phases,
        ladder=LadderPlan(
            rates=args.ladder or [],
            step_seconds=args.step_seconds,
            ceiling_p99_ms=args.ceiling_p99_ms,
            mixed_rate=args.mixed_rate,
            candidate_rate=args.candidate_rate,
            mixed_seconds=args.mixed_seconds,
            workers=args.solution_workers,
        ),
        storm_workers=tuple(args.storm_workers or ()),
        storm_in_flight=args.storm_in_flight,
        soak_seconds=args.soak_seconds,
        soak_rate=args.soak_rate,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = plan_from(args)
    results: dict[str, Any] = {
        "machine": machine_facts(),
        "command": ["python", "-m", "misc.bench", *sys.argv[1:]],
        "modes": {},
    }
    for mode in args.modes:
        counts = plan.workers
        if mode == "per_connection":
            counts = [c for c in counts if c <= args.per_connection_max]
            skipped = [c for c in plan.workers if c > args.per_connection_max]
            if skipped:
                say(f"per_connection: skipping {skipped} (above --per-connection-max)")
        say(f"mode {mode}")
        if args.own_stack:
            extra = {"WSPOOL_POSTGRES_DSN": args.postgres_dsn}
            with own_stack(mode, args.port_offset, args.logs, extra) as endpoints:
                results["modes"][mode] = await run_stack(endpoints, plan, counts)
        else:
            endpoints = Endpoints(
                args.node_url,
                args.worker_url,
                args.node_http,
                args.worker_http,
                args.job_worker_http,
                args.solution_worker_http,
            )
            results["modes"][mode] = await run_stack(endpoints, plan, counts)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_fd_limit()  # before any child process starts: they inherit it
    if limit < max(args.workers) + 100:
        say(f"warning: only {limit} file descriptors allowed; large worker counts will fail")
    try:
        results = asyncio.run(run(args))
    except (OSError, RuntimeError, TimeoutError) as error:
        hint = "" if args.own_stack else " (is the stack running? `make run`, or use --own-stack)"
        print(f"error: {error}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.plot:
        problem = plot(results, args.plot)
        if problem:
            say(problem)
    return 0
