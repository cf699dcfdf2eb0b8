"""The benchmark's PNG plot, when matplotlib is there (`pip install .[bench]`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(results: dict[str, Any], path: Path) -> str | None:
    """Fan-out percentiles against worker count, one line per mode and percentile."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no plot written"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for mode, run in results["modes"].items():
        points = [f for f in run.get("fanout", []) if f["fanout_ms"]["count"]]
        counts = [f["workers"] for f in points]
        for quantile, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            values = [f["fanout_ms"][quantile] for f in points]
            axes.plot(counts, values, style, marker="o", label=f"{mode} {quantile}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("connected workers")
    axes.set_ylabel("job fan-out latency (ms)")
    axes.set_title("wspool job fan-out: node send -> worker receive")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return None
