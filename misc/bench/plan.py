"""What a benchmark run does: the phases, their sizes, rates and bounds.

`misc.bench.cli` builds a Plan from the command line; the phases only read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LadderPlan:
    """The throughput ladder and the mixed run (see `misc.bench.ladder`)."""

    rates: list[float]
    step_seconds: float
    ceiling_p99_ms: float
    mixed_rate: float  # 0: twice the ceiling the ladder found
    candidate_rate: float
    mixed_seconds: float
    workers: int  # at least; more when the top rate needs them


@dataclass
class Plan:
    workers: list[int]
    jobs: int
    job_gap: float
    processes: int
    sources: list[str]
    solution_workers: int
    rtt_rate: float
    rtt_seconds: float
    rate: float
    duration: float
    drain_timeout: float
    postgres_dsn: str
    recovery_rounds: int = 20
    admin_token: str = ""  # node_server's, to retire the jobs sent
    phases: frozenset[str] = frozenset({"fanout", "solutions", "recovery"})
    ladder: LadderPlan | None = None  # for the "ladder" phase
    storm_workers: tuple[int, ...] = ()  # for the "storm" phase, one storm per count
    storm_in_flight: int = 1000  # handshakes open at once, over every client process
    soak_seconds: float = 0.0  # for the "soak" phase
    soak_rate: float = 200.0  # worker visits (connections) a second
