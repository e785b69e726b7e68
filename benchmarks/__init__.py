"""Benchmarks of ticker: the ``ticker-bench`` load generator, a naive baseline server and the
scenario runner of docs/benchmarks.md. Benchmarks report numbers; tests only check they run."""
