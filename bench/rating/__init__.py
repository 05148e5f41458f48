"""Rating benchmarks: the tariff engine's core throughput (``core_bench``) and more."""
