"""What node_server's solution path keeps in memory, measured in-process with tracemalloc.

    python -m misc.bench.memory [--minutes 3] [--shares-per-second 600]

Replays the soak's shape without sockets: a new job (height) every 2 s, a
flow of shares and a few candidates per height, each record decoded as the
fan-out decodes it and offered to the recovery window and to one node
connection's filter, with node_server's default bounds. Prints traced memory
per simulated minute and the allocation sites that grew most (by traceback),
then the bytes each remembered solution and each window entry costs.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import uuid

import orjson

from node_server.expectations import NodeExpectations
from node_server.recovery import RecoveryWindow
from node_server.settings import NodeServerSettings
from node_server.solutions import SolutionUpdate, decode_solution

JOB_SECONDS = 2
PROOF_TARGET = 100
DIGEST = "d" * 32


def record(height: int, task_id: uuid.UUID, number: int, target: int) -> bytes:
    """A solution record as process_solution_worker writes it to Kafka."""
    solution = {
        "partial_solution": {
            "address": "aleo1" + "q" * 58,
            "nonce": f"{number}-{uuid.uuid4().hex[:8]}",
            "commitment": "c0ffee" * 8,
        },
        "proof.w": {"x": "1" * 70, "y": "2" * 70, "infinity": False},
    }
    return orjson.dumps(
        {
            "task_id": str(task_id),
            "solution_target": target,
            "solution_height": height,
            "received_at": time.time_ns(),
            "challenge_digest": DIGEST,
            "solution": solution,
        }
    )


def soak(minutes: int, shares_per_second: int) -> None:
    settings = NodeServerSettings()
    window = RecoveryWindow(
        settings.recovery_window_per_height,
        settings.solution_wait_time_seconds,
        settings.recovery_window_solutions,
    )
    node = NodeExpectations(
        settings.solution_wait_time_seconds,
        max_heights=settings.max_expected_heights,
        max_delivered=settings.max_delivered_per_connection,
        max_jobs_per_height=settings.max_jobs_per_height,
    )
    per_height = shares_per_second * JOB_SECONDS
    tracemalloc.start(8)
    first = tracemalloc.take_snapshot()
    height = 1000
    for minute in range(1, minutes + 1):
        for _ in range(60 // JOB_SECONDS):
            height += 1
            task_id = uuid.uuid4()
            node.expect(height, PROOF_TARGET, DIGEST)
            for n in range(per_height):
                target = 2 * PROOF_TARGET if n % 600 == 0 else PROOF_TARGET // 2
                update = decode_solution(record(height, task_id, n, target))
                window.offer(update)
                node.accept(update)
        traced = tracemalloc.get_traced_memory()[0] / 2**20
        print(f"minute {minute}: {traced:.1f} MiB traced, window {len(window)}")
    grew = tracemalloc.take_snapshot().compare_to(first, "traceback")
    for stat in grew[:3]:
        print(f"+{stat.size_diff / 2**20:.1f} MiB in {stat.count_diff} blocks at")
        print("\n".join("    " + line for line in stat.traceback.format()[-4:]))
    tracemalloc.stop()


def bytes_per_remembered(count: int = 50_000) -> float:
    """Traced bytes one node connection keeps per delivered solution (each update is
    dropped after delivery, as the fan-out drops it: only what the filter keeps counts)."""
    node = NodeExpectations(60, max_delivered=count)
    node.expect(1, 1, now=0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        node.accept(SolutionUpdate(1, 1, (uuid.uuid4(), f"{n}-{uuid.uuid4().hex}"), b"", 0), now=1)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def bytes_per_window_entry(count: int = 20_000) -> float:
    """Traced bytes the recovery window holds per solution (record decoded, frame included)."""
    task_id = uuid.uuid4()
    records = [record(1, task_id, n, PROOF_TARGET) for n in range(count)]
    window = RecoveryWindow(count, 1200, count)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for value in records:
        window.offer(decode_solution(value))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m misc.bench.memory", description=__doc__)
    parser.add_argument("--minutes", type=int, default=3, help="simulated minutes")
    parser.add_argument("--shares-per-second", type=int, default=600)
    args = parser.parse_args(argv)
    soak(args.minutes, args.shares_per_second)
    print(f"bytes per remembered solution: {bytes_per_remembered():.0f}")
    print(f"bytes per recovery window entry: {bytes_per_window_entry():.0f}")


if __name__ == "__main__":
    main()
