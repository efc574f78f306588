"""An SMTP sink in its own process (so it does not share the measured process's GIL): accepts
everything; with --times FILE it writes each message's arrival time there (JSON, seconds since
the epoch) when it is stopped (SIGTERM)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self):
        self.arrivals: list[float] = []

    async def handle_DATA(self, server, session, envelope):
        # The wall clock, not a monotonic one: the pacing benchmark compares these across processes.
        self.arrivals.append(time.time())
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--times")
    args = parser.parse_args()
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    if args.times:
        with open(args.times, "w") as f:
            json.dump(handler.arrivals, f)
    print(len(handler.arrivals), flush=True)


class Sink:
    """Start with `Sink(port)`; `stop()` returns how many messages it accepted, and then
    `arrivals` holds when each arrived (time.time(), in order)."""

    def __init__(self, port: int):
        fd, self._times = tempfile.mkstemp(prefix="signoff-sink-", suffix=".json")
        os.close(fd)
        args = [sys.executable, "-m", "bench.sink", str(port), "--times", self._times]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        self.port = port
        self.arrivals: list[float] = []

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        try:
            with open(self._times) as f:
                self.arrivals = json.load(f)
        finally:
            os.unlink(self._times)
        return int(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
