"""``ticker-bench``: a load generator for any protocol v1 server (many WebSocket clients).

It ships in the wheel; the scenario runner, the naive baseline and the desktop probes
that use it stay in the repository's ``benchmarks/`` (see docs/benchmarks.md).
"""
