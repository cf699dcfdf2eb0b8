"""misc.bench against a real stack, tiny: it connects, measures, counts and stops."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from misc.bench.cli import parse_args, plan_from
from misc.bench.facts import percentile
from misc.bench.plan import LadderPlan, Plan
from misc.bench.report import render
from misc.bench.run import READY_PROBES, run_stack
from misc.bench.stack import Endpoints
from misc.bench.waves import Tally
from tests.support.stack import Backends, Stack, StartServers

NOWHERE = "http://127.0.0.1:9"  # the in-process consumers serve their metrics elsewhere


def endpoints(stack: Stack) -> Endpoints:
    return Endpoints(
        stack.node_url, stack.worker_url, stack.node_http, stack.worker_http, NOWHERE, NOWHERE
    )


def tiny_plan(backends: Backends, **sizes: Any) -> Plan:
    """A plan of a few clients from two source addresses, on the test's database."""
    sizes = {"jobs": 1, "rtt_rate": 1, "rtt_seconds": 0.1, "rate": 1, "duration": 0.1, **sizes}
    return Plan(
        job_gap=0.0,
        processes=2,
        sources=["127.0.2.1", "127.0.3.1"],
        solution_workers=4,
        drain_timeout=20,
        postgres_dsn=backends.postgres_dsn,
        **sizes,
    )


async def test_bench_measures_a_running_stack(
    start_servers: StartServers, backends: Backends
) -> None:
    plan = tiny_plan(
        backends,
        workers=[3],
        jobs=2,
        rtt_rate=20,
        rtt_seconds=0.5,
        rate=40,
        duration=0.5,
        recovery_rounds=3,
    )
    # Shared mode only: per_connection gives the same figures here, only slower.
    async with start_servers(fanout_mode="shared") as stack:
        results = await run_stack(endpoints(stack), plan, plan.workers)

    fanout = results["fanout"][0]
    assert fanout["connected"] == 3 + READY_PROBES
    assert fanout["delivery_ratio"] == 1.0
    assert fanout["fanout_ms"]["count"] == (3 + READY_PROBES) * 2
    assert fanout["ready_ms"]["count"] == READY_PROBES
    solutions = results["solutions"]
    assert solutions["round_trip"]["delivery_ratio"] == 1.0
    throughput = solutions["throughput"]
    assert throughput["offered"] > 0
    assert throughput["delivered"] == throughput["stored"] == throughput["offered"]
    assert throughput["lost"] == 0
    assert results["recovery"]["latency_ms"]["count"] == 3
    table = render({"machine": _facts(), "modes": {"shared": results}})
    assert "| shared | 3 | 53 |" in table
    assert "### Recovery" in table and "| shared | 3 |" in table.split("### Recovery")[1]


async def test_ladder_and_mixed_run_end_to_end_at_a_tiny_rate(
    start_servers: StartServers, backends: Backends
) -> None:
    """The tool, not the speed: every step and the mixed run count what they offered."""
    ladder = LadderPlan(
        rates=[20, 40],
        step_seconds=0.5,
        ceiling_p99_ms=60_000,  # a loaded test machine must not fail a tool check
        mixed_rate=40,
        candidate_rate=10,
        mixed_seconds=0.5,
        workers=4,
    )
    plan = tiny_plan(backends, workers=[1], phases=frozenset({"ladder"}), ladder=ladder)
    async with start_servers(fanout_mode="shared") as stack:
        results = await run_stack(endpoints(stack), plan, plan.workers)

    assert results["fanout"] == [] and "solutions" not in results
    steps = results["ladder"]["steps"]
    assert [step["rate"] for step in steps] == [20, 40]
    for step in steps:
        assert step["offered"] > 0 and step["sustained"]
        assert step["delivered"] == step["stored"] == step["offered"]
    assert results["ladder"]["ceiling_per_second"] == steps[-1]["offered_per_second"]
    mixed = results["ladder"]["mixed"]
    candidates = mixed["candidates"]
    assert candidates["offered"] > 0 and candidates["delivered"] == candidates["offered"]
    # node_server's own view of the same candidates: read from its histogram.
    server = candidates["server_ms_at_most"]
    assert server["p50"] is not None and server["p50"] <= server["p99"]
    assert mixed["shares"]["offered"] > 0
    assert mixed["stored"] == mixed["offered_total"]
    table = render({"machine": _facts(), "modes": {"shared": results}})
    assert "### Throughput ladder" in table and "ceiling" in table
    assert "### Mixed" in table and "### Job fan-out" not in table


async def test_storm_and_soak_run_end_to_end_at_a_tiny_size(
    start_servers: StartServers, backends: Backends
) -> None:
    """The tool, not the speed: both waves hold every worker, the soak counts what it sent."""
    plan = tiny_plan(
        backends,
        workers=[1],
        phases=frozenset({"storm", "soak"}),
        storm_workers=(20,),
        storm_in_flight=8,
        soak_seconds=5,
        soak_rate=10,
    )
    async with start_servers(fanout_mode="shared") as stack:
        results = await run_stack(endpoints(stack), plan, plan.workers)

    assert results["fanout"] == [] and "solutions" not in results
    (storm,) = results["storm"]
    assert storm["workers"] == 20
    for wave in (storm["cold"], storm["after_blip"]):
        assert wave["held_job"] == 20 and wave["without_job"] == 0
        assert wave["ready_ms"]["count"] == 20
        assert wave["all_hold_job_seconds"] is not None and wave["all_hold_job_seconds"] > 0
    soak = results["soak"]
    visits = soak["visits"]
    assert visits["visits"] > 0 and visits["shares"] == 3 * visits["visits"]
    assert visits["aborted"] > 0 and visits["closed"] > 0
    assert visits["aborted"] + visits["closed"] == visits["visits"]
    assert soak["candidates_sent"] > 0
    assert soak["candidates_arrived"] == soak["candidates_sent"]
    for service in ("node_server", "worker_server"):  # the others run in the test's process
        rss = soak["rss_mib"][service]
        assert rss["start"] and rss["third"] and rss["end"]
    assert soak["rss_mib"]["process_job_worker"]["start"] is None
    table = render({"machine": _facts(), "modes": {"shared": results}})
    assert "| shared | 20 | cold | 20 |" in table
    assert "| shared | 20 | after the blip | 20 |" in table
    soak_rows = table.split("### Soak")[1]
    assert f"| shared | 5 | 10 | {visits['visits']} | {visits['shares']} |" in soak_rows


def _facts() -> dict[str, object]:
    return {
        "cores": 2,
        "cpu": "test",
        "memory_gib": 1,
        "load_average": [0, 0, 0],
        "python": "3",
        "platform": "test",
        "packages": {},
        "when": "now",
    }


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([], 50) is None


def test_ladder_rates_make_the_ladder_a_phase() -> None:
    args = parse_args(["--ladder", "500,1000", "--phases", "ladder"])
    assert args.ladder == [500, 1000] and args.phases == {"ladder"}
    assert "ladder" in parse_args(["--ladder", "100"]).phases


def test_storm_counts_and_soak_seconds_make_their_phases() -> None:
    args = parse_args(["--storm-workers", "1000,5000", "--soak-seconds", "600"])
    assert {"storm", "soak", "fanout"} <= args.phases
    plan = plan_from(args)
    assert plan.storm_workers == (1000, 5000) and plan.soak_seconds == 600
    assert parse_args(["--phases", "storm", "--storm-workers", "10"]).phases == {"storm"}


def test_several_modes_start_their_own_stacks() -> None:
    args = parse_args(["--modes", "shared,per_connection", "--workers", "1,10"])
    assert args.own_stack and args.workers == [1, 10]
    assert args.modes == ["shared", "per_connection"]


async def test_failed_handshakes_are_counted_by_kind() -> None:
    """Refused (503/429, with or without Retry-After) apart from broken, from real answers."""

    async def answer(request: web.Request) -> web.StreamResponse:
        status = int(request.query["status"])
        if status == 0:  # the peer drops the connection mid-handshake
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        headers = {"Retry-After": "3"} if "retry" in request.query else {}
        return web.json_response({"error": "busy"}, status=status, headers=headers)

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tally = Tally()
    retry_afters = []
    try:
        async with aiohttp.ClientSession() as session:
            for query in ("status=503&retry", "status=429", "status=400", "status=0"):
                with pytest.raises((aiohttp.ClientError, OSError)) as raised:
                    await session.ws_connect(f"ws://127.0.0.1:{port}/?{query}")
                retry_afters.append(tally.failed(raised.value))
    finally:
        await runner.cleanup()
    assert retry_afters == [3.0, None, None, None]
    figures = tally.figures()
    assert figures["refused"] == {"503": 1, "429 without Retry-After": 1}
    assert figures["broken"] == {"HTTP 400": 1, "ServerDisconnectedError": 1}
