"""Benchmarks for issue 3 (`make bench`): throughput, idle tick, memory, page speed, digest."""
