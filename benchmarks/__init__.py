"""Benchmarks of ticker, kept in the repository (not in the wheel): the scenario runner of
docs/benchmarks.md, a naive baseline server and the desktop probes. The load generator they
drive is the installed package ``ticker_bench``. Benchmarks report numbers; tests check they run."""
