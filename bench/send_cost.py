"""Send cost: the opening-day tick for 5,000 staff and three policies for everyone, sending to the
local sink (bench/sink.py, in a process of its own) with no provider limits. Each person gets one
email naming the three (5,000 emails, not 15,000). The figure is the tick's wall time over the
emails it sent, so it counts everything the opening day costs per person: making and planning the
requests, queueing, and for each email its claim, rendering, SMTP and recorded outcome.

A provider lets one message go every 1 to 2 seconds; this need only be a small part of that."""

from __future__ import annotations

from . import world

STAFF = 5_000
POLICIES = 3


def run(staff: int = STAFF, db_url: str | None = None, policies: int = POLICIES) -> dict:
    # Asserts that `staff` * `policies` reminders were queued and `staff` emails went.
    result, elapsed, arrivals = world.opening_day(staff, db_url, policies=policies)
    return {"tick_s": elapsed, "sent": staff, "queued": result.queued,
            "per_message_ms": 1000 * elapsed / staff,
            # For reading the figure: the part of the tick between the first and last arrival.
            "sending_s": arrivals[-1] - arrivals[0]}


if __name__ == "__main__":
    print(run())
