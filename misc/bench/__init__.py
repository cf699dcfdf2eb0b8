"""The benchmark: `python -m misc.bench` (`make bench`); see docs/benchmarks.md, "How to run"."""
