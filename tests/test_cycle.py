"""A year's cycle through the CLI with `--at`, on both databases: opening, follow-ups, the head
teacher's digest, confirmations (through the page), new starters, inactive people, downtime, `plan`,
a first deployment mid-year, and the next year's cycle."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlalchemy import select

from conftest import ROSTER, at, hidden_fields, link_in

ROSTER_WITH_INACTIVE = ROSTER + "Frank Green,frank@example.org,Cook,,no\n"
STAFF = ["amira@example.org", "ben@example.org", "chloe@example.org"]
HEAD = "head@example.org"


def kind(message) -> str:
    subject = message["Subject"]
    for marker, name in (("Please re-read", "reminder"), ("Reminder: please confirm", "followup"),
                         ("not confirmed", "digest"), ("could not be delivered", "alert")):
        if marker in subject:
            return name
    raise AssertionError(f"unknown kind of message: {subject!r}")


def address(message) -> str:
    return message["To"].addresses[0].addr_spec


class Story:
    """Ticks at moments of the story (London time) and what each one sent."""

    def __init__(self, cli, config, inbox):
        self.cli, self.config, self.inbox = cli, config, inbox

    def tick(self, when: str) -> list[tuple[str, str]]:
        before = len(self.inbox)
        result = self.cli("tick", "--at", at(when).isoformat(), config=self.config)
        assert result.exit_code == 0, result.output
        return sorted((address(m), kind(m)) for m in self.inbox.messages[before:])

    def last(self, to: str, what: str):
        return [m for m in self.inbox.to(to) if kind(m) == what][-1]

    def import_roster(self, text: str) -> None:
        path = self.config.parent / "more-staff.csv"
        path.write_text(text)
        result = self.cli("staff", "import", str(path), config=self.config)
        assert result.exit_code == 0, result.output



def confirm(app, link: str, when: str) -> str:
    """The person opens their link and confirms, at that moment of the story; returns the page."""
    client = app.test_client()
    path = urlsplit(link).path
    with time_machine.travel(at(when), tick=False):
        page = client.get(path)
        assert page.status_code == 200, page.text
        form = {**hidden_fields(page.text), "s0": "y", "s1": "y"}
        done = client.post(path, data=form)
        assert done.status_code == 303, done.text
        return client.get(path).text


@pytest.fixture
def story(setup, cli, smtp):
    def make(roster: str = ROSTER_WITH_INACTIVE, **schedule) -> Story:
        return Story(cli, setup(roster, **schedule), smtp.inbox)
    return make


@pytest.fixture
def make_app():
    from workflow import config
    from workflow.app import create_app

    apps = []

    def make(path):
        apps.append(create_app(config.load(path)))
        return apps[-1]

    yield make
    for application in apps:
        application.extensions["signoff"].db.dispose()


def outbox_rows(config_path) -> list[tuple[str, str]]:
    from workflow import config
    from workflow.db import Database
    from workflow.models import Outbox

    db = Database(config.load(config_path).database.url)
    try:
        with db.read() as session:
            return list(session.execute(select(Outbox.key, Outbox.status).order_by(Outbox.id)))
    finally:
        db.dispose()


@pytest.mark.slow
def test_whole_cycle_from_the_opening(story, make_app):
    s = story()
    app = make_app(s.config)

    assert s.tick("2026-09-01 08:00") == [(a, "reminder") for a in STAFF]
    amira_first_link = link_in(s.last("amira@example.org", "reminder"))
    assert s.tick("2026-09-01 12:00") == []
    assert s.tick("2026-09-07 08:00") == []
    assert s.tick("2026-09-08 07:59") == []
    assert s.tick("2026-09-08 08:00") == [(a, "followup") for a in STAFF]

    # Amira confirms through the link in her first email; she gets nothing more.
    page = confirm(app, amira_first_link, "2026-09-09 10:00")
    assert "You confirmed" in page and "9 September 2026" in page

    # Dan starts now (no start date), Eve on Monday 5 October.
    s.import_roster("name,email,start_date\nDan Price,dan@example.org,\n"
                    "Eve Stone,eve@example.org,2026-10-05\n")
    assert s.tick("2026-09-10 08:00") == [("dan@example.org", "reminder")]
    assert s.tick("2026-09-15 08:00") == [("ben@example.org", "followup"),
                                          ("chloe@example.org", "followup")]
    assert s.tick("2026-09-17 08:00") == [("dan@example.org", "followup")]

    # Ben and Chloe were asked to confirm by Tuesday 22 September, 21 days after their first
    # reminder: all that day nobody is overdue; the next morning brings the first digest.
    assert s.tick("2026-09-22 08:00") == []
    assert s.tick("2026-09-22 23:59") == []
    assert s.tick("2026-09-23 08:00") == [(HEAD, "digest")]
    first_digest = s.last(HEAD, "digest").get_body(("plain",)).get_content()
    assert "Ben Lewis <ben@example.org>" in first_digest
    assert "Chloe Evans <chloe@example.org>" in first_digest
    for absent in ("amira@", "dan@", "eve@", "frank@", "Frank"):
        assert absent not in first_digest
    assert "2 people are overdue" in first_digest
    assert ("Ben Lewis <ben@example.org>, Room Leader — Use of Social Media Policy: asked to "
            "confirm by Tuesday 22 September 2026, 1 day past, 3 reminders sent") in first_digest

    assert s.tick("2026-09-24 08:00") == [("dan@example.org", "followup")]
    assert s.tick("2026-09-29 08:00") == []
    assert s.tick("2026-09-30 08:00") == [(HEAD, "digest")]  # weekly while anyone is overdue

    # Dan was asked (on 10 September) to confirm by Thursday 1 October.
    assert "by 1 October" in s.last("dan@example.org", "followup")["Subject"]
    confirm(app, link_in(s.last("ben@example.org", "followup")), "2026-09-30 18:00")
    assert s.tick("2026-10-02 08:00") == []  # Dan is overdue now, but the digest is weekly
    assert s.tick("2026-10-05 07:59") == []
    assert s.tick("2026-10-05 08:00") == [("eve@example.org", "reminder")]  # her first day
    assert s.tick("2026-10-06 08:00") == []
    assert s.tick("2026-10-07 08:00") == [(HEAD, "digest")]
    third_digest = s.last(HEAD, "digest").get_body(("plain",)).get_content()
    assert "Chloe Evans <chloe@example.org>" in third_digest
    assert "Dan Price <dan@example.org>" in third_digest
    for absent in ("amira@", "ben@", "eve@", "frank@"):
        assert absent not in third_digest

    for person in ("chloe@example.org", "dan@example.org", "eve@example.org"):
        confirm(app, link_in(s.inbox.to(person)[-1]), "2026-10-08 09:00")
    # Everyone has confirmed: no follow-up for Eve, no more digests.
    assert s.tick("2026-10-12 08:00") == []
    assert s.tick("2026-10-13 08:00") == []
    assert s.tick("2026-11-30 08:00") == []
    assert s.inbox.to("frank@example.org") == []

    # The next year's cycle re-asks every active person, last year's confirmers included.
    assert s.tick("2027-08-31 12:00") == []
    assert s.tick("2027-09-01 08:00") == [(a, "reminder") for a in sorted(
        STAFF + ["dan@example.org", "eve@example.org"])]
    new_link = link_in(s.last("amira@example.org", "reminder"))
    with time_machine.travel(at("2027-09-02 10:00"), tick=False):
        client = app.test_client()
        old = client.get(urlsplit(amira_first_link).path)
        assert old.status_code == 410
        assert "2026 review" in old.text and "newest email" in old.text
        fresh = client.get(urlsplit(new_link).path)
        assert fresh.status_code == 200 and "Hello Amira." in fresh.text
        assert "You confirmed" not in fresh.text


def test_followups_and_digest_move_off_weekends_and_bank_holidays(story):
    # Monday 24 Aug 2026 opens; +7 is the Summer bank holiday (Mon 31 Aug), +12 is a Saturday.
    s = story(annual_open="08-24", reminder_after_days="[7, 12]", escalate_after_days=19)
    plan = s.cli("plan", "--from", "2026-08-24T08:00", "--to", "2026-09-13", config=s.config)
    lines = [line for line in plan.output.splitlines() if "amira@" in line]
    assert lines[0].startswith("2026-08-24 Mon 08:00  first reminder") and "; after" not in lines[0]
    assert lines[1].startswith("2026-09-01 Tue 08:00  follow-up 1")
    assert lines[1].endswith("; after Late Summer Bank Holiday")
    assert lines[2].startswith("2026-09-07 Mon 08:00  follow-up 2")
    assert lines[2].endswith("; after Saturday, Sunday")
    assert s.tick("2026-08-24 08:00") == [(a, "reminder") for a in STAFF]
    assert s.tick("2026-08-31 08:00") == []  # bank holiday
    assert s.tick("2026-09-01 07:59") == []
    assert s.tick("2026-09-01 08:00") == [(a, "followup") for a in STAFF]
    assert s.tick("2026-09-05 08:00") == []  # Saturday
    assert s.tick("2026-09-06 23:00") == []
    assert s.tick("2026-09-07 08:00") == [(a, "followup") for a in STAFF]
    # Asked to confirm within 19 days: by Saturday 12 Sep, which moves to Monday 14 Sep as a send
    # would; overdue from Tuesday, when the first digest goes.
    assert "by 14 September" in s.last("amira@example.org", "followup")["Subject"]
    assert s.tick("2026-09-12 08:00") == []
    assert s.tick("2026-09-14 08:00") == []
    assert s.tick("2026-09-15 08:00") == [(HEAD, "digest")]


CLOSURES = """
[[closure]]
name = "INSET days"
from = "2026-09-01"
to = "2026-09-02"

[[closure]]
name = "Half term"
from = 2026-09-24
to = 2026-09-25
"""


def test_nothing_goes_while_the_setting_is_closed_and_dates_move_past_closures(story):
    s = story(extra=CLOSURES)
    plan = s.cli("plan", "--from", "2026-09-01T08:00", "--to", "2026-09-30", config=s.config)
    amira = [line for line in plan.output.splitlines() if "amira@" in line]
    assert amira[0].startswith("2026-09-03 Thu 08:00  first reminder")
    assert amira[0].endswith("; after INSET days")
    assert s.tick("2026-09-01 08:00") == [] and s.tick("2026-09-02 08:00") == []
    assert s.tick("2026-09-03 08:00") == [(a, "reminder") for a in STAFF]
    # 21 days on is Thu 24 Sep, half term: the date to confirm by moves past it and the weekend.
    assert "by 28 September" in s.last("amira@example.org", "reminder")["Subject"]
    assert s.tick("2026-09-10 08:00") == [(a, "followup") for a in STAFF]
    assert s.tick("2026-09-17 08:00") == [(a, "followup") for a in STAFF]
    assert s.tick("2026-09-28 08:00") == []  # on their date nobody is overdue
    assert s.tick("2026-09-29 08:00") == [(HEAD, "digest")]


def test_an_opening_on_a_saturday_before_a_bank_holiday_waits_for_tuesday(story):
    s = story(annual_open="08-29")
    plan = s.cli("plan", "--from", "2026-08-29T08:00", "--to", "2026-09-02", config=s.config)
    assert plan.output.count("; after Saturday, Sunday, Late Summer Bank Holiday") == 3
    assert s.tick("2026-08-29 08:00") == []  # the 2026 cycle is open, but the first send waits
    assert s.tick("2026-08-31 08:00") == []  # Summer bank holiday
    assert s.tick("2026-09-01 08:00") == [(a, "reminder") for a in STAFF]


def test_a_first_deployment_mid_year_asks_at_once_and_keeps_to_0800_across_dst(story):
    s = story()
    # Wednesday 24 March 2027, GMT: the 2026 cycle opened last September, so ask now.
    assert s.tick("2027-03-24 10:30") == [(a, "reminder") for a in STAFF]
    # Due 21 days after this first reminder, not after last September's opening.
    assert s.last("amira@example.org", "reminder")["Subject"].endswith("by 14 April")
    # Clocks go forward on Sunday 28 March; the follow-up still goes at 08:00 London (07:00 UTC).
    assert s.tick("2027-03-31 07:59") == []
    assert s.tick("2027-03-31 08:00") == [(a, "followup") for a in STAFF]
    assert at("2027-03-31 08:00").utcoffset().total_seconds() == 3600


def test_after_weeks_of_downtime_one_message_each_and_one_digest(story):
    s = story()
    assert s.tick("2026-09-01 08:00") == [(a, "reminder") for a in STAFF]
    # The server was off from 1 September until 20 October.
    assert s.tick("2026-10-20 10:00") == sorted([(a, "followup") for a in STAFF]
                                                + [(HEAD, "digest")])
    keys = [key for key, _ in outbox_rows(s.config)]
    assert not [k for k in keys if k.endswith("followup-1")]  # the stale follow-up is skipped
    assert len([k for k in keys if k.endswith("followup-2")]) == 3
    assert s.tick("2026-10-20 12:00") == []
    assert s.tick("2026-10-21 08:00") == []
    assert s.tick("2026-10-27 08:00") == [(HEAD, "digest")]


PLAN_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}) \w{3} (\d{2}:\d{2})  (first reminder|follow-up \d|"
                       r"head-teacher digest)\s+.*<([^>]+)>  \[")


def test_plan_prints_the_timeline_sends_nothing_and_ticks_keep_to_it(story, cli):
    s = story()
    # From the opening: a moment earlier is still in the 2025 cycle, which is asked for at once.
    result = cli("plan", "--from", "2026-09-01T08:00", "--to", "2026-10-10", config=s.config)
    assert result.exit_code == 0, result.output
    assert len(s.inbox) == 0
    assert outbox_rows(s.config) == []
    planned = []
    for line in result.output.splitlines():
        match = PLAN_LINE.match(line)
        if match:
            day, time, what, who = match.groups()
            planned.append((f"{day} {time}", who, what))
    assert "frank@example.org" not in result.output
    expected_days = {"first reminder": "2026-09-01 08:00", "follow-up 1": "2026-09-08 08:00",
                     "follow-up 2": "2026-09-15 08:00"}
    assert sorted(planned) == sorted(
        [(day, a, what) for what, day in expected_days.items() for a in STAFF]
        + [(day, HEAD, "head-teacher digest")
           for day in ("2026-09-23 08:00", "2026-09-30 08:00", "2026-10-07 08:00")])

    category = {"first reminder": "reminder", "head-teacher digest": "digest"}
    expected = sorted((when, who, category.get(what, "followup")) for when, who, what in planned)
    # Nothing in this window moved off a weekend or holiday, so no line says it did.
    assert "; after" not in result.output

    sent = sorted((moment, who, what) for moment in sorted({when for when, _, _ in planned})
                  for who, what in s.tick(moment))
    assert sent == expected
    # Nothing unplanned comes due by the end of the window either.
    assert s.tick("2026-10-09 23:59") == []


def test_plan_after_downtime_shows_the_follow_ups_the_next_tick_catches_up_on(story, cli):
    """The scheduler was down when everyone's first follow-up fell due (8 September), and when
    the second did: the plan from the day it is back shows one follow-up each, the latest, going
    with its first tick, and that tick sends just that."""
    s = story()
    assert s.tick("2026-09-01 08:00") == [(a, "reminder") for a in STAFF]
    result = cli("plan", "--from", "2026-09-16T11:30", "--to", "2026-09-21", config=s.config)
    assert result.exit_code == 0, result.output
    planned = sorted((f"{m[1]} {m[2]}", m[4], m[3])
                     for m in map(PLAN_LINE.match, result.output.splitlines()) if m)
    assert planned == [("2026-09-16 11:30", a, "follow-up 2") for a in STAFF]
    assert s.tick("2026-09-16 11:30") == [(a, "followup") for a in STAFF]
    assert s.tick("2026-09-21 08:00") == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("schedule, start, end", [
    # Christmas and New Year, with new starters whose first day falls in the holidays.
    (dict(annual_open="12-20", reminder_after_days="[3, 5, 9]", escalate_after_days=10,
          digest_every_days=4), "2026-12-20T08:00", "2027-01-16"),
    # Follow-ups a day apart that a weekend pushes onto the same Monday, then Easter.
    (dict(annual_open="03-27", reminder_after_days="[1, 2]", escalate_after_days=4,
          digest_every_days=3), "2026-03-27T08:00", "2026-04-12"),
], ids=["christmas", "easter"])
def test_plan_matches_the_ticks_across_holidays(story, cli, schedule, start, end):
    s = story("name,email,start_date\nAmira Khan,amira@example.org,\n"
              "Ben Lewis,ben@example.org,2027-01-02\nChloe Evans,chloe@example.org,2026-12-28\n",
              **schedule)
    result = cli("plan", "--from", start, "--to", end, config=s.config)
    category = {"first reminder": "reminder", "head-teacher digest": "digest"}
    planned = sorted((f"{m[1]} {m[2]}", m[4], category.get(m[3], "followup"))
                     for m in map(PLAN_LINE.match, result.output.splitlines()) if m)
    assert planned
    sent = sorted((moment, who, what) for moment in sorted({when for when, _, _ in planned})
                  for who, what in s.tick(moment))
    assert sent == planned
    assert s.tick(f"{end} 00:00") == []
