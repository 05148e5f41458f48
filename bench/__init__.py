"""Benchmarks (not tests): runnable scripts and their shared machinery; results in RESULTS.md."""
