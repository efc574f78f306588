"""Send cost: the opening-day tick for 5,000 staff, sending to the local sink (bench/sink.py, in a
process of its own) with no provider limits. The figure is the tick's wall time over the messages
it sent, so it counts everything the opening day costs per person: making and planning the
requests, queueing, and for each message its claim, rendering, SMTP and recorded outcome.

A provider lets one message go every 1 to 2 seconds; this need only be a small part of that."""

from __future__ import annotations

from . import world

STAFF = 5_000


def run(staff: int = STAFF, db_url: str | None = None) -> dict:
    _, elapsed, arrivals = world.opening_day(staff, db_url)  # asserts all `staff` went
    return {"tick_s": elapsed, "sent": staff, "per_message_ms": 1000 * elapsed / staff,
            # For reading the figure: the part of the tick between the first and last arrival.
            "sending_s": arrivals[-1] - arrivals[0]}


if __name__ == "__main__":
    print(run())
