"""(3) Memory: the opening-day tick for 50,000 staff, in a process of its own, peaks under 300 MB.

The setting is built here; `python -m bench.memory CONFIG` then ticks it in a fresh process, as
cron or the scheduler would, and prints its peak RSS. The figure is that process's peak plus each
of its children's: the composing helper and, on PostgreSQL, the process making the turns between
batches (forked children: pages they share with the tick are counted again, so the sum errs high)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
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
    children = _ChildPeaks()
    children.start()
    with app.app_context():
        started = time.perf_counter()
        result = tick.run(svc, world.OPEN)
        elapsed = time.perf_counter() - started
    children.stop()
    peak_kib = _high_water_kib()
    # Each child's peak as last sampled; and at least the largest child's, as the kernel kept it
    # when it was reaped (a sample may miss its last 50 ms).
    children_kib = max(sum(children.peaks.values()),
                       resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"peak_mb": (peak_kib + children_kib) / 1024,
                      "tick_process_mb": peak_kib / 1024, "helper_mb": children_kib / 1024,
                      "children": len(children.peaks), "before_tick_mb": before / 1024,
                      "sent": result.delivery.sent, "tick_s": elapsed}))


class _ChildPeaks(threading.Thread):
    """The peak RSS of each child process the tick forks, sampled every 50 ms while it runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            self.sample()

    def sample(self) -> None:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:  # forked by the main thread
            pids = [int(pid) for pid in f.read().split()]
        for pid in pids:
            try:
                kib = _high_water_kib(pid)
            except (OSError, RuntimeError):  # gone already
                continue
            self.peaks[pid] = max(self.peaks.get(pid, 0), kib)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _high_water_kib(pid: int | str = "self") -> int:
    """A process's peak RSS (VmHWM). Not getrusage()'s ru_maxrss: Linux carries that across
    exec from the process that started us (here the benchmark, at its largest after building the
    setting), which would count the builder's memory as the tick's."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


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
    return figures


if __name__ == "__main__":
    child(sys.argv[1])
