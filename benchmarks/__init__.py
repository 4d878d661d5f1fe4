"""Benchmark harness: the service over HTTP vs the in-process ceiling and peer servers (issue 4).

Run everything with ``python -m benchmarks`` (or ``make bench``); see ``python -m benchmarks --help``.
Not tests: numbers are printed as ratios measured side by side in one run (CONVENTIONS.md).
"""
