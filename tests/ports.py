"""A free TCP port on loopback for the servers the tests and benchmarks start, and a wait for
`signoff serve` to answer on one."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until `signoff serve` (`process`) answers GET /healthz with 200 on `port`. Raises
    RuntimeError, with what it wrote to stderr if it exited, when it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if process.poll() is not None:
            said = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"signoff serve exited ({process.returncode}): {said}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"signoff serve did not answer on port {port} in {timeout:.0f} s")
        time.sleep(0.05)
