"""Benchmarks for issue 3 (`make bench`): throughput, idle tick, memory, page speed, digest."""

import sys
from pathlib import Path

# The throwaway servers' helpers are the tests' own (tests/ports.py, tests/pgcluster.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
