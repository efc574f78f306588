"""An SMTP sink in its own process (so it does not share the measured process's GIL): accepts
everything; with --keep FILE it writes every message's bytes there when it is stopped (SIGTERM)."""

from __future__ import annotations

import argparse
import pickle
import signal
import subprocess
import sys
import threading

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, keep: bool):
        self.keep = keep
        self.messages: list[bytes] = []
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        if self.keep:
            self.messages.append(envelope.content)
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--keep")
    args = parser.parse_args()
    handler = Handler(bool(args.keep))
    controller = Controller(handler, hostname="127.0.0.1", port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    if args.keep:
        with open(args.keep, "wb") as f:
            pickle.dump(handler.messages, f)
    print(handler.count, flush=True)


class Sink:
    """Start with `Sink(port, keep=path)`; `stop()` returns how many messages it accepted."""

    def __init__(self, port: int, keep: str | None = None):
        args = [sys.executable, "-m", "bench.sink", str(port)] + (["--keep", keep] if keep else [])
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        self.port = port

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        return int(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
