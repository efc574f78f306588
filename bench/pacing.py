"""Pacing: with `[mail] max_per_minute = 600` (one turn every 0.1 s), the opening-day tick for 300
staff to the local sink, which records when each message arrived. 300 messages should take 30 s
(± 5%), no 60-second window hold more than 600, and no 1-second window more than 10 (11 allowing
for a few milliseconds' jitter in the arrivals).

The duration is measured from the first arrival to the last, plus one interval: 300 messages
occupy 300 turns, and the last turn ends an interval after the last message starts. So a perfect
pacer scores 30 s exactly, whether or not it waits before its first message, and the tick's own
work before sending (making and queueing the requests) is not counted as pacing. Measured from the
tick's start instead, a perfect pacer would score 29.9 s plus that setup time.

Windows are half-open, [t, t + width), starting at each arrival: a perfect pacer then has 10 in
every 1-second window. With 300 messages in 30 s no 60-second window can hold more than 300, so
that check holds whatever the pacer does; the 1-second window is the one that sees a burst."""

from __future__ import annotations

import bisect

from . import world

PER_MINUTE = 600
MESSAGES = 300


def most_within(times: list[float], width: float) -> int:
    """The most of the sorted `times` in any window [t, t + width)."""
    return max((bisect.bisect_left(times, t + width, lo=i) - i for i, t in enumerate(times)),
               default=0)


def run(messages: int = MESSAGES, per_minute: int = PER_MINUTE, db_url: str | None = None) -> dict:
    _, elapsed, arrivals = world.opening_day(messages, db_url, max_per_minute=per_minute)
    arrivals = sorted(arrivals)
    interval = 60 / per_minute
    return {"s": arrivals[-1] - arrivals[0] + interval, "expected_s": messages * interval,
            "tick_s": elapsed, "most_in_60s": most_within(arrivals, 60.0),
            "most_in_1s": most_within(arrivals, 1.0),
            "shortest_gap_ms": 1000 * min(b - a for a, b in zip(arrivals, arrivals[1:])),
            "longest_gap_ms": 1000 * max(b - a for a, b in zip(arrivals, arrivals[1:]))}


if __name__ == "__main__":
    print(run())
