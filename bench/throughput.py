"""(1) Send throughput: the opening-day tick for 5,000 staff against a floor script that sends the
very same messages (the bytes the sink received from the tick) over one smtplib connection.

On a 2-core machine one run's ratio moves by ±10% with whatever else the machine is doing, so the
tick and the floor are measured in turn, ROUNDS times, and the median ratio is the figure."""

from __future__ import annotations

import pickle
import smtplib
import tempfile
import time
from pathlib import Path

from . import world
from .sink import Sink

STAFF = 5_000
ROUNDS = 5


def tick_seconds(staff: int = STAFF, keep: str | None = None,
                 db_url: str | None = None) -> tuple[float, int]:
    from workflow import tick

    port = world.free_port()
    w = world.build(staff, port, db_url=db_url)
    sink = Sink(port, keep=keep)
    try:
        app = w.app()
        svc = app.extensions["signoff"]
        with app.app_context():
            started = time.perf_counter()
            result = tick.run(svc, world.OPEN)
            elapsed = time.perf_counter() - started
        svc.db.dispose()
    finally:
        received = sink.stop()
        w.remove()
    assert result.delivery.sent == staff and received == staff, (result.summary(), received)
    return elapsed, received


def floor_seconds(messages: list[bytes]) -> float:
    port = world.free_port()
    sink = Sink(port)
    try:
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            for i, content in enumerate(messages):
                smtp.sendmail("noreply@example.org", [f"person{i:06}@example.org"], content)
        elapsed = time.perf_counter() - started
    finally:
        received = sink.stop()
    assert received == len(messages)
    return elapsed


def run(rounds: int = ROUNDS, db_url=None, staff: int = STAFF) -> dict:
    """`db_url`: None for SQLite, or a callable giving a fresh database's URL each round."""
    measured = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            keep = str(Path(folder) / "messages.pickle")
            tick_time, sent = tick_seconds(staff, keep=keep, db_url=db_url() if db_url else None)
            with open(keep, "rb") as f:
                messages = pickle.load(f)
        floor_time = floor_seconds(messages)
        measured.append((floor_time / tick_time, tick_time, floor_time, sent))
    ratio, tick_time, floor_time, sent = sorted(measured)[len(measured) // 2]
    return {"tick_s": tick_time, "floor_s": floor_time, "ratio": ratio,
            "per_message_ms": 1000 * tick_time / sent,
            "ratios": [round(m[0], 2) for m in measured],
            "rounds": [(round(m[1], 2), round(m[2], 2)) for m in measured]}


if __name__ == "__main__":
    print(run())
