"""Benchmarks: each module prints its figures; results are recorded in BENCHMARKS.md."""
