"""Confirmation page: requests/s of GET on a personal link against GET /healthz on the same
`signoff serve`, with 8 concurrent keep-alive clients (http.client in threads)."""

from __future__ import annotations

import http.client
import math
import os
import subprocess
import sys
import threading
import time

from ports import wait_until_serving

from . import world

CLIENTS = 8
ROUNDS = 6  # each URL is measured in turns, so a change in the machine's load hits both alike
SECONDS = 1.0  # per URL per round


def _load(port: int, path: str) -> tuple[float, list[float]]:
    """(seconds, latencies) of CLIENTS keep-alive clients GETting `path` for SECONDS."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + SECONDS
    errors = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                mine.append(time.perf_counter() - started)
                if response.status != 200:
                    errors.append(response.status)
                    return
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert not errors, errors
    return elapsed, latencies


def _measure(port: int, paths: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Per name: (requests per second, p99 latency in seconds), over ROUNDS turns of each path."""
    seconds = dict.fromkeys(paths, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(ROUNDS):
        for name, path in paths.items():
            elapsed, mine = _load(port, path)
            seconds[name] += elapsed
            latencies[name].extend(mine)
    result = {}
    for name, times in latencies.items():
        times.sort()
        p99 = times[math.ceil(len(times) * 0.99) - 1]  # nearest rank
        result[name] = (len(times) / seconds[name], p99)
    return result


def _link(w: world.World) -> str:
    """A live personal link for the first person (a token inserted the way the outbox does)."""
    from sqlalchemy import select

    from workflow import tokens
    from workflow.models import Link, Request

    app = w.app()
    svc = app.extensions["signoff"]
    token, digest = tokens.new_token()
    with svc.db.write() as session:
        request_id = session.scalars(select(Request.id).order_by(Request.id).limit(1)).one()
        session.add(Link(request_id=request_id, token_sha256=digest, created_at=world.OPEN))
    svc.db.dispose()
    return f"/c/{token}"


def run(db_url: str | None = None, staff: int = 5_000) -> dict:
    # The page checks a link against the real clock's cycle: make the requests in that cycle.
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    w = world.build(staff, requests_sent_at=now - dt.timedelta(minutes=1), db_url=db_url)
    path = _link(w)
    port = world.free_port()
    env = {**os.environ, "SIGNOFF_SECRET_KEY": "bench"}
    server = subprocess.Popen([sys.executable, "-m", "workflow", "--config", str(w.config_path),
                               "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_serving(port, server)
        for warm_up in ("/healthz", path):
            _load(port, warm_up)
        figures = _measure(port, {"healthz": "/healthz", "page": path})
        (health_rps, health_p99), (page_rps, page_p99) = figures["healthz"], figures["page"]
    finally:
        server.terminate()
        server.wait(timeout=10)
        w.remove()
    return {"healthz_rps": health_rps, "page_rps": page_rps, "ratio": page_rps / health_rps,
            "page_p99_ms": page_p99 * 1000, "healthz_p99_ms": health_p99 * 1000}


if __name__ == "__main__":
    print(run())
