"""Benchmarks (`make bench`): idle tick, page speed, digest, memory, send cost, pacing."""

import sys
from pathlib import Path

# The throwaway servers' helpers are the tests' own (tests/ports.py, tests/pgcluster.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
