"""Where a machine's CPU goes while the benchmark runs: CPU seconds per program.

Run beside a ladder step on the same host (`python -m misc.bench.cpu_budget
--seconds 5`). Reads /proc before and after; groups processes by what they
run (a wspool service, the benchmark's clients, postgres, beam.smp for
RabbitMQ, tansu), so the floor of a step can be read as CPU per solution.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

from shared.runtime.supervisor import usage


def program(pid: Path) -> str:
    """A short name for what `pid` runs: `python -m x` is `x`, else the executable's name."""
    argv = (pid / "cmdline").read_bytes().split(b"\0")
    words = [word.decode(errors="replace") for word in argv if word]
    if not words:
        return "kernel"
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    if words[0].startswith("postgres"):  # backends retitle themselves "postgres: ..."
        return "postgres"
    if "multiprocessing" in " ".join(words):  # the benchmark's client processes
        return "bench clients"
    return Path(words[0]).name.split("-")[0]


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds of every process, by pid, with its program."""
    found = {}
    for pid in Path("/proc").glob("[0-9]*"):
        try:
            found[int(pid.name)] = (program(pid), usage(pid.name).cpu_seconds)
        except OSError:  # ended meanwhile
            continue
    return found


def budget(seconds: float) -> dict[str, float]:
    """Cores used per program over `seconds` (processes that started meanwhile count from 0)."""
    before = cpu_seconds()
    time.sleep(seconds)
    after = cpu_seconds()
    used: collections.Counter[str] = collections.Counter()
    for pid, (name, spent) in after.items():
        used[name] += spent - before.get(pid, (name, 0.0))[1]
    return {name: round(spent / seconds, 2) for name, spent in used.most_common() if spent > 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="sampling window")
    args = parser.parse_args()
    cores = budget(args.seconds)
    print("| program | cores |\n|---|---|")
    for name, used in cores.items():
        print(f"| {name} | {used} |")
    print(f"| total | {round(sum(cores.values()), 2)} |")


if __name__ == "__main__":
    main()
