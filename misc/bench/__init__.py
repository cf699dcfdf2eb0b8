"""The benchmark: `python -m misc.bench` (`make bench`); see the README, "Benchmarks"."""
