"""Invoicing benchmarks (bill runs)."""
