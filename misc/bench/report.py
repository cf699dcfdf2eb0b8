"""The benchmark's output as markdown tables (the PNG plot: `misc.bench.plot`)."""

from __future__ import annotations

from typing import Any

from shared.catalogue import SERVICES as CATALOGUE

SERVICES = tuple(CATALOGUE)  # in the order they are started


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fanout_table(results: dict[str, Any]) -> str:
    header = [
        "mode",
        "workers",
        "connected",
        "ready p50 ms",
        "ready p99 ms",
        "ready p99 ms while connecting",
        "fan-out p50 ms",
        "p95",
        "p99",
        "max",
        "delivered",
        "RSS/conn KiB",
        "server CPU s/job",
    ]
    rows = []
    for mode, run in results["modes"].items():
        for f in run.get("fanout", []):
            rows.append(
                [
                    mode,
                    f["workers"],
                    f["connected"],
                    f["ready_ms"]["p50"],
                    f["ready_ms"]["p99"],
                    f["ready_during_connect_ms"]["p99"],
                    f["fanout_ms"]["p50"],
                    f["fanout_ms"]["p95"],
                    f["fanout_ms"]["p99"],
                    f["fanout_ms"]["max"],
                    f"{f['delivery_ratio']:.2%}",
                    f["rss_per_connection_kib"],
                    f["server_cpu_seconds_per_job"],
                ]
            )
    return _table(header, rows)


def solutions_table(results: dict[str, Any]) -> str:
    header = [
        "mode",
        "round trip p50 ms",
        "p95",
        "p99",
        "delivered",
        "offered/s",
        "delivered/s",
        "offered",
        "delivered",
        "stored",
        "missing after drain",
    ]
    rows = []
    for mode, run in results["modes"].items():
        s = run.get("solutions")
        if not s:
            continue
        rtt, tp = s["round_trip"], s["throughput"]
        rows.append(
            [
                mode,
                rtt["latency_ms"]["p50"],
                rtt["latency_ms"]["p95"],
                rtt["latency_ms"]["p99"],
                f"{rtt['delivery_ratio']:.2%}",
                tp["offered_per_second"],
                tp["delivered_per_second"],
                tp["offered"],
                tp["delivered"],
                tp["stored"],
                tp["lost"],
            ]
        )
    return _table(header, rows)


def recovery_table(results: dict[str, Any]) -> str:
    rows = []
    for mode, run in results["modes"].items():
        recovery = run.get("recovery")
        if recovery:
            latency = recovery["latency_ms"]
            rows.append([mode, recovery["rounds"], latency["p50"], latency["p95"], latency["p99"]])
    return _table(["mode", "reconnects", "p50 ms", "p95", "p99"], rows)


def cpu_table(results: dict[str, Any]) -> str:
    services = list(SERVICES)
    rows = []
    for mode, run in results["modes"].items():
        cpu = run.get("solutions", {}).get("throughput", {}).get("server_cpu_seconds", {})
        if cpu:
            rows.append([mode, *(cpu.get(s) for s in services)])
    return _table(["mode (CPU s during the throughput run)", *services], rows)


def ladder_table(results: dict[str, Any]) -> str:
    header = ["mode", "rate/s", "offered/s", "delivered/s", "delivered", "stored", "p50 ms"]
    header += ["p99 ms", "max ms", "sustained", "CPU us/solution (ws, psw, ns)"]
    rows = []
    for mode, run in results["modes"].items():
        for step in run.get("ladder", {}).get("steps", []):
            cpu = step.get("cpu_us_per_solution", {})
            services = ("worker_server", "process_solution_worker", "node_server")
            latency = step["latency_ms"]
            rows.append(
                [
                    mode,
                    step["rate"],
                    step["offered_per_second"],
                    step["delivered_per_second"],
                    f"{step['delivery_ratio']:.2%}",
                    step["stored"],
                    latency["p50"],
                    latency["p99"],
                    latency["max"],
                    "yes" if step["sustained"] else "no",
                    " / ".join(_cell(cpu.get(s)) for s in services),
                ]
            )
    ceilings = [
        f"{mode}: ceiling {run['ladder']['ceiling_per_second']:g}/s"
        for mode, run in results["modes"].items()
        if run.get("ladder")
    ]
    return _table(header, rows) + ("\n\n" + "; ".join(ceilings) if ceilings else "")


def mixed_table(results: dict[str, Any]) -> str:
    header = ["mode", "shares offered/s", "candidates offered/s", "candidates delivered"]
    header += ["candidate p50 ms", "p99 ms", "max ms", "server p50 / p99 ms (at most)"]
    header += ["stored / offered"]
    rows = []
    for mode, run in results["modes"].items():
        mixed = (run.get("ladder") or {}).get("mixed")
        if not mixed:
            continue
        candidates = mixed["candidates"]
        latency = candidates["latency_ms"]
        server = candidates.get("server_ms_at_most") or {}
        rows.append(
            [
                mode,
                mixed["shares"]["offered_per_second"],
                candidates["offered_per_second"],
                f"{candidates['delivery_ratio']:.2%}",
                latency["p50"],
                latency["p99"],
                latency["max"],
                " / ".join(_cell(server.get(q)) for q in ("p50", "p99")),
                f"{_cell(mixed['stored'])} / {mixed['offered_total']}",
            ]
        )
    return _table(header, rows)


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "0"


def storm_table(results: dict[str, Any]) -> str:
    header = ["mode", "workers", "wave", "held the job", "all held it after s"]
    header += ["welcome -> job p50 ms", "p99 ms", "refused (503/429)", "broken"]
    rows = []
    for mode, run in results["modes"].items():
        for storm in run.get("storm", []):
            for name, label in (("cold", "cold"), ("after_blip", "after the blip")):
                wave = storm[name]
                rows.append(
                    [
                        mode,
                        storm["workers"],
                        label,
                        wave["held_job"],
                        wave["all_hold_job_seconds"],
                        wave["ready_ms"]["p50"],
                        wave["ready_ms"]["p99"],
                        _counted(wave["refused"]),
                        _counted(wave["broken"]),
                    ]
                )
    return _table(header, rows)


def soak_table(results: dict[str, Any]) -> str:
    header = ["mode", "seconds", "connections/s", "visits", "shares", "candidates sent"]
    header += ["arrived", "refused", "broken", "error frames"]
    header += [f"{s} RSS MiB start / third / end" for s in SERVICES]
    rows = []
    for mode, run in results["modes"].items():
        soak = run.get("soak")
        if not soak:
            continue
        visits = soak["visits"]
        rss = [
            " / ".join(_cell(soak["rss_mib"].get(s, {}).get(p)) for p in ("start", "third", "end"))
            for s in SERVICES
        ]
        rows.append(
            [
                mode,
                soak["seconds"],
                soak["rate"],
                visits.get("visits", 0),
                visits.get("shares", 0),
                soak["candidates_sent"],
                soak["candidates_arrived"],
                _counted(soak["refused"]),
                _counted(
                    {
                        **soak["broken"],
                        **{k: v for k, v in visits.items() if k.startswith(("no ", "send", "unf"))},
                    }
                ),
                _counted(soak["error_frames"]),
                *rss,
            ]
        )
    return _table(header, rows)


SECTIONS = (
    ("Job fan-out (node send -> each worker receive) and worker ready time", (fanout_table,)),
    (
        "Solutions (worker send -> node receive) and sustained throughput",
        (solutions_table, cpu_table),
    ),
    ("Recovery (node reconnects and re-sends its job -> first missed solution)", (recovery_table,)),
    ("Throughput ladder (worker send -> node receive, each step a fresh task)", (ladder_table,)),
    ("Mixed: shares (stored, not forwarded) plus candidates (forwarded)", (mixed_table,)),
    ("Storm: every worker at once, then a blip (all dropped) and all back at once", (storm_table,)),
    ("Soak: churning workers, a job every 2 s, each service's memory", (soak_table,)),
)


def render(results: dict[str, Any]) -> str:
    """The tables of the phases that ran (a table without rows is left out)."""
    facts = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in facts["packages"].items() if v)
    parts = []
    for title, tables in SECTIONS:
        rendered = [table(results) for table in tables]
        rendered = [t for t in rendered if t.count("\n") > 1]  # header, rule, rows
        if rendered:
            parts += [f"### {title}", *rendered]
    parts.append(
        f"Machine: {facts['cores']} cores ({facts['cpu']}), {facts['memory_gib']} GiB, "
        f"load {facts['load_average']}, Python {facts['python']}, {facts['platform']}; "
        f"{packages}. Measured {facts['when']}."
    )
    return "\n\n".join(parts)
