"""(3) Memory: the opening-day tick for 50,000 staff, in a process of its own, peaks under 300 MB.
Run as `python -m bench.memory STAFF`: builds the setting, starts a sink, ticks, prints peak RSS."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

STAFF = 50_000


def child(staff: int) -> None:
    from workflow import tick

    from . import world
    from .sink import Sink

    port = world.free_port()
    w = world.build(staff, port)
    sink = Sink(port)
    try:
        app = w.app()
        svc = app.extensions["signoff"]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with app.app_context():
            started = time.perf_counter()
            result = tick.run(svc, world.OPEN)
            elapsed = time.perf_counter() - started
        svc.db.dispose()
    finally:
        received = sink.stop()
        w.remove()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_mb": peak_kib / 1024, "before_tick_mb": before / 1024,
                      "sent": result.delivery.sent, "received": received, "tick_s": elapsed}))


def run(staff: int = STAFF) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.memory", str(staff)], capture_output=True,
                         text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["sent"] == figures["received"] == staff, figures
    return figures


if __name__ == "__main__":
    child(int(sys.argv[1]))
