"""Clock and calendar edges through real ticks, on both databases: the week the clocks go back,
an opening on 29 February in a common and a leap year, Christmas and the new year, and a scheduler
that was off across the start of a new cycle (catches up once; nobody gets two messages a day)."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from conftest import at

STAFF = ["amira@example.org", "ben@example.org", "chloe@example.org"]
HEAD = "head@example.org"


def kind(message) -> str:
    subject = message["Subject"]
    for marker, name in (("Please re-read", "reminder"), ("Reminder: please confirm", "followup"),
                         ("not confirmed", "digest")):
        if marker in subject:
            return name
    raise AssertionError(f"unexpected message: {subject!r}")


@pytest.fixture
def tick(setup, cli, smtp):
    """tick(config, "2026-10-26 08:00") -> sorted [(address, kind)] that tick sent (London time)."""
    def run(config, when: str) -> list[tuple[str, str]]:
        before = len(smtp.inbox)
        result = cli("tick", "--at", at(when).isoformat(), config=config)
        assert result.exit_code == 0, result.output
        # A policy's review reminder to the head teacher falls due a year after `init`, on the
        # day the suite runs: not what these calendars are about.
        return sorted((m["To"].addresses[0].addr_spec, kind(m))
                      for m in smtp.inbox.messages[before:]
                      if "due for review" not in m["Subject"])
    return run


def rows(config):
    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Cycle, Outbox, Request

    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return list(session.execute(
                select(Outbox.key, Outbox.status, Outbox.to_email, Outbox.sent_at, Cycle.year)
                .outerjoin(Request, Outbox.request_id == Request.id)
                .outerjoin(Cycle, Request.cycle_id == Cycle.id).order_by(Outbox.id)))
    finally:
        db.dispose()


def test_the_week_the_clocks_go_back_keeps_0800_london(setup, tick):
    # Monday 19 October 2026 opens (BST); the follow-up is due Monday 26th, the day after the
    # clocks go back, at 08:00 GMT. An hour-out bug would send it at 07:00 GMT.
    config = setup(annual_open="10-19", reminder_after_days="[7]")
    assert tick(config, "2026-10-19 08:00") == [(a, "reminder") for a in STAFF]
    assert at("2026-10-26 07:00").utcoffset().total_seconds() == 0
    assert tick(config, "2026-10-26 07:00") == []
    assert tick(config, "2026-10-26 07:59") == []
    assert tick(config, "2026-10-26 08:00") == [(a, "followup") for a in STAFF]


def test_an_opening_on_29_february_in_a_common_year_then_a_leap_year(setup, tick):
    config = setup(annual_open="02-29", reminder_after_days="[7]", escalate_after_days=60)
    # 2027 has no 29 February: the cycle opens on Sunday 28th and the first send waits for Monday.
    assert tick(config, "2027-02-28 08:00") == []
    assert {year for *_, year in rows(config)} == set()
    assert tick(config, "2027-03-01 08:00") == [(a, "reminder") for a in STAFF]
    assert tick(config, "2027-03-08 08:00") == [(a, "followup") for a in STAFF]
    # 2028 is a leap year: the 2027 cycle runs until Tuesday 29 February 2028 at 08:00.
    assert tick(config, "2028-02-28 08:00") == [(HEAD, "digest")]
    assert tick(config, "2028-02-29 07:59") == []
    assert tick(config, "2028-02-29 08:00") == [(a, "reminder") for a in STAFF]
    reminders = Counter((year, key.rsplit(":", 1)[1]) for key, status, _, _, year in rows(config)
                        if year is not None and status == "sent")
    assert reminders == {(2027, "reminder"): 3, (2027, "followup-1"): 3, (2028, "reminder"): 3}


def test_christmas_and_the_new_year_stay_in_the_cycle_and_skip_the_holidays(setup, tick):
    # Monday 14 December 2026. +14 is Monday 28th, the Boxing Day substitute holiday, so Tuesday;
    # the date to confirm by, 21 days on, is Monday 4 January 2027: overdue from the next day, when
    # the digest goes, in the 2026 cycle.
    config = setup(annual_open="12-14")
    assert tick(config, "2026-12-14 08:00") == [(a, "reminder") for a in STAFF]
    assert tick(config, "2026-12-21 08:00") == [(a, "followup") for a in STAFF]
    assert tick(config, "2026-12-28 08:00") == []
    assert tick(config, "2026-12-29 08:00") == [(a, "followup") for a in STAFF]
    assert tick(config, "2027-01-01 08:00") == []
    assert tick(config, "2027-01-04 08:00") == []
    assert tick(config, "2027-01-05 08:00") == [(HEAD, "digest")]
    keys = [key for key, *_ in rows(config)]
    assert "digest:2027-01-05" in keys
    assert {year for *_, year in rows(config) if year is not None} == {2026}


def test_downtime_across_a_new_cycle_sends_one_message_each_per_day_and_nothing_stale(
        setup, tick, smtp):
    config = setup(reminder_after_days="[7, 14]", escalate_after_days=21)
    assert tick(config, "2026-09-01 08:00") == [(a, "reminder") for a in STAFF]
    # Off from early September 2026 until mid-September 2027: last year's follow-ups and digests
    # are stale; this year's first reminder goes once.
    assert tick(config, "2027-09-14 10:00") == [(a, "reminder") for a in STAFF]
    assert tick(config, "2027-09-14 16:00") == []
    assert tick(config, "2027-09-15 08:00") == []
    sent = [(email, sent_at) for _, status, email, sent_at, _ in rows(config) if status == "sent"]
    per_day = Counter((email, at_.date()) for email, at_ in sent)
    assert max(per_day.values()) == 1
    assert not [key for key, _, _, _, year in rows(config) if year == 2026 and "followup" in key]
