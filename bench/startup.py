"""Start-up: how long a command takes from the shell, as an office manager or a cron job meets it.
`signoff --version` and `--help` (< 0.3 s), and `report` on a setting of six people (< 0.6 s), each
as a new process (best of five), on SQLite. What a command imports is most of it: each imports
the web and mail stacks only where it needs them."""

from __future__ import annotations

import subprocess
import sys
import time

from . import world

RUNS = 5


def _best(args: list[str]) -> float:
    best = float("inf")
    for _ in range(RUNS):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "workflow", *args], capture_output=True,
                              text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"signoff {' '.join(args)} failed: {done.stderr}")
        best = min(best, elapsed)
    return best


def run() -> dict[str, float]:
    w = world.build(6, requests_sent_at=world.OPEN)
    try:
        return {"version_s": _best(["--version"]), "help_s": _best(["--help"]),
                "report_s": _best(["--config", str(w.config_path), "report"])}
    finally:
        w.remove()


if __name__ == "__main__":
    for name, seconds in run().items():
        print(f"{name}: {seconds * 1000:.0f} ms")
