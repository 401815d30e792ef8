"""Benchmarks: one script per figure in docs/benchmarks.md, each writing JSON results."""
