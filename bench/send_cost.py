"""Send cost: the opening-day tick for 5,000 staff, sending to the local sink (bench/sink.py, in a
process of its own) with no provider limits. The figure is the tick's wall time over the messages
it sent, so it counts everything the opening day costs per person: making and planning the
requests, queueing, and for each message its claim, rendering, SMTP and recorded outcome.

A provider lets one message go every 1 to 2 seconds; this need only be a small part of that."""

from __future__ import annotations

import time

from . import world
from .sink import Sink

STAFF = 5_000


def run(staff: int = STAFF, db_url: str | None = None) -> dict:
    from workflow import tick

    port = world.free_port()
    w = world.build(staff, port, db_url=db_url)
    sink = Sink(port)
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
    sent = result.delivery.sent
    assert sent == staff and received == staff, (result.summary(), received)
    arrivals = sink.arrivals
    return {"tick_s": elapsed, "sent": sent, "per_message_ms": 1000 * elapsed / sent,
            # For reading the figure: the part of the tick between the first and last arrival.
            "sending_s": arrivals[-1] - arrivals[0]}


if __name__ == "__main__":
    print(run())
