"""Memory: the opening-day tick for 50,000 staff, in a process of its own, peaks under 300 MB.

The setting is built here; `python -m bench.memory CONFIG` then ticks it in a fresh process, as
cron or the scheduler would, and prints that process's peak RSS and the tick's time. The tick does
all its work in that one process; were it to start a process of its own again, that process's
memory would be missing from the figure, so the run fails instead."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

STAFF = 50_000


def child(config_path: str) -> None:
    from workflow import config as config_mod
    from workflow import tick
    from workflow.app import create_app

    from . import world

    app = create_app(config_mod.load(config_path))
    svc = app.extensions["signoff"]
    before = _high_water_kib()
    with app.app_context():
        started = time.perf_counter()
        result = tick.run(svc, world.OPEN)
        elapsed = time.perf_counter() - started
    print(json.dumps({"peak_mb": _high_water_kib() / 1024, "before_tick_mb": before / 1024,
                      "sent": result.delivery.sent, "tick_s": elapsed,
                      # Nonzero once a child process of ours has been waited for.
                      "children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))


def _high_water_kib() -> int:
    """This process's peak RSS (VmHWM). Not getrusage()'s ru_maxrss: Linux carries that across
    exec from the process that started us (here the benchmark, at its largest after building the
    setting), which would count the builder's memory as the tick's."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def run(staff: int = STAFF, db_url: str | None = None) -> dict:
    from . import world
    from .sink import Sink

    port = world.free_port()
    w = world.build(staff, port, db_url=db_url)
    sink = Sink(port)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.memory", str(w.config_path)],
                             capture_output=True, text=True, check=True)
    finally:
        received = sink.stop()
        w.remove()
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["sent"] == received == staff, (figures, received)
    assert not figures["children_kib"], f"the tick started a process; not in the figure: {figures}"
    return figures


if __name__ == "__main__":
    child(sys.argv[1])
