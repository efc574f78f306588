"""One email a day, on both databases: a person with several policies due gets one email naming
each, with a link for each, confirmed each on its own; a policy that comes due later the same day
waits for the next; the head teacher's digest lists each overdue person once; the outbox keeps its
guarantees for an email of several rows."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from admin_helpers import admin, app, clock, console, post, staff_id  # noqa: F401
from conftest import at, link_in
from helpers import CODE_OF_CONDUCT, confirm_by_page, flat, parts


LONE_WORKING_AT_TEN = """
[[policy]]
slug = "lone-working"
title = "Lone Working Policy"
text = \"\"\"# Lone Working Policy

Tell the office before you work alone on site.
\"\"\"
statements = ["I tell the office before I work alone."]

[policy.schedule]
send_time = "10:00"
reminder_after_days = [2]
"""

LINK = re.compile(r"https?://\S+/c/[A-Za-z0-9_-]{43}")


def _tick(cli, config, when: str):
    result = cli("tick", "--at", at(when).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return result


def _to(message) -> str:
    return message["To"].addresses[0].addr_spec


def _links(message) -> list[str]:
    """The personal links of an email, in order, the same in both parts."""
    text, html = parts(message)
    found = LINK.findall(text)
    assert sorted(set(found)) == sorted(set(re.findall(r'href="([^"]+/c/[^"]+)"', html)))
    return found


def test_two_policies_due_together_come_in_one_email_each_confirmed_on_its_own(setup, cli, smtp):
    config = setup(extra=CODE_OF_CONDUCT)
    result = _tick(cli, config, "2026-09-01 08:00")
    assert "6 queued, 3 sent" in result.output
    assert Counter(_to(m) for m in smtp.inbox.messages) == Counter(
        {"amira@example.org": 1, "ben@example.org": 1, "chloe@example.org": 1})
    amira = smtp.inbox.to("amira@example.org")[0]
    assert amira["Subject"] == "Please re-read 2 policies, the first by 22 September"
    text, html = parts(amira)
    for body in (text, flat(html)):
        assert "2 of the Test Nursery policies are waiting for you" in body
        assert body.index("Use of Social Media Policy") < body.index("Staff Code of Conduct")
        assert body.count("confirm by Tuesday 22 September 2026") == 2
        assert "at most one email like this a day" in body
    social, conduct = _links(amira)
    assert social != conduct
    # Each link is its own policy's page; confirming one leaves the other to do, and says so.
    thanks = flat(confirm_by_page(config, social, at("2026-09-02 10:00")))
    assert "You confirmed the Use of Social Media Policy on" in thanks
    assert "Still waiting for you" in thanks and "Staff Code of Conduct" in thanks
    report = cli("report", "--format", "csv", "--at", at("2026-09-02 11:00").isoformat(),
                 config=config).stdout
    amira_rows = sorted(line.split(",")[2:4] for line in report.splitlines()
                        if "amira@example.org" in line)
    assert ["code-of-conduct", "pending"] in [row[:2] for row in _fields(report, "amira")]
    assert ["social-media", "confirmed"] in [row[:2] for row in _fields(report, "amira")]
    assert amira_rows
    # Their follow-up a week on names only what is still to do: one policy, its own wording.
    before = len(smtp.inbox)
    _tick(cli, config, "2026-09-08 08:00")
    follow_ups = smtp.inbox.messages[before:]
    assert Counter(_to(m) for m in follow_ups) == Counter(
        {"amira@example.org": 1, "ben@example.org": 1, "chloe@example.org": 1})
    amira_again = next(m for m in follow_ups if _to(m) == "amira@example.org")
    assert amira_again["Subject"] == ("Reminder: please confirm the Staff Code of Conduct by "
                                      "22 September")
    thanks = flat(confirm_by_page(config, link_in(amira_again), at("2026-09-08 10:00")))
    assert "Still waiting" not in thanks and "anything else until next year" in thanks
    assert ["code-of-conduct", "confirmed"] in [
        row[:2] for row in _fields(cli("report", "--format", "csv", "--at",
                                       at("2026-09-08 11:00").isoformat(),
                                       config=config).stdout, "amira")]
    ben_again = next(m for m in follow_ups if _to(m) == "ben@example.org")
    assert ben_again["Subject"] == "Reminder: please confirm 2 policies, the first by 22 September"
    assert len(_links(ben_again)) == 2


def _fields(report: str, who: str) -> list[list[str]]:
    """(policy, status, …) of `who`'s rows in a CSV report."""
    import csv
    import io

    return [[row["policy"], row["status"]] for row in csv.DictReader(io.StringIO(report))
            if row["email"].startswith(who)]


def test_a_policy_due_later_on_a_day_the_person_has_had_their_email_waits_for_the_next(
        setup, cli, smtp):
    config = setup(extra=LONE_WORKING_AT_TEN.replace("[2]", "[7]"))
    _tick(cli, config, "2026-09-01 10:00")  # both cycles open: one email each, naming both
    assert len(smtp.inbox) == 3
    assert all(s.startswith("Please re-read 2 policies") for s in smtp.inbox.subjects())
    # A week on, the social media policy's follow-up goes at 08:00, lone working's at 10:00.
    _tick(cli, config, "2026-09-08 08:00")
    assert len(smtp.inbox) == 6
    assert all("Social Media" in m["Subject"] for m in smtp.inbox.messages[3:])
    result = _tick(cli, config, "2026-09-08 10:00")
    assert len(smtp.inbox) == 6, smtp.inbox.subjects()  # each person has had today's email
    assert "3 queued, 0 sent" in result.output
    # The next morning, at the earliest send time of any policy, it goes.
    _tick(cli, config, "2026-09-09 07:59")
    assert len(smtp.inbox) == 6
    _tick(cli, config, "2026-09-09 08:00")
    assert sorted(_to(m) for m in smtp.inbox.messages[6:]) == [
        "amira@example.org", "ben@example.org", "chloe@example.org"]
    assert all(m["Subject"] == "Reminder: please confirm the Lone Working Policy by 22 September"
               for m in smtp.inbox.messages[6:])


PLANNED = re.compile(r"^(\d{4}-\d\d-\d\d) \w{3} (\d\d:\d\d)  (first reminder|follow-up \d) +"
                     r"[^<\n]*<([^>]+)>  \[([\w-]+)\]  (.*)$", re.M)


def test_the_plan_shows_a_send_that_waits_a_day_when_it_goes_and_the_ticks_keep_to_it(
        setup, cli, smtp):
    """Lone working sends at 10:00, the social media policy at 08:00: on a day both are due for
    someone, the plan shows lone working's the next morning and says why; a new starter's first
    lone working reminder waits a day too, and its follow-up counts from when it went. Ticks at
    both policies' times send just what the plan shows."""
    roster = ("name,email,start_date\nAmira Khan,amira@example.org,\n"
              "Dan Price,dan@example.org,2026-09-14\n")
    config = setup(roster, extra=LONE_WORKING_AT_TEN.replace("[2]", "[7]"))
    _tick(cli, config, "2026-09-01 10:00")  # Amira: one email naming both
    result = cli("plan", "--from", "2026-09-01T10:01", "--to", "2026-09-22T23:00", config=config)
    assert result.exit_code == 0, result.output
    planned = [m.groups() for m in PLANNED.finditer(result.output)]
    assert [(day, time, what, who, policy) for day, time, what, who, policy, _ in planned] == [
        ("2026-09-08", "08:00", "follow-up 1", "amira@example.org", "social-media"),
        ("2026-09-09", "08:00", "follow-up 1", "amira@example.org", "lone-working"),
        ("2026-09-14", "08:00", "first reminder", "dan@example.org", "social-media"),
        ("2026-09-15", "08:00", "first reminder", "dan@example.org", "lone-working"),
        ("2026-09-15", "08:00", "follow-up 2", "amira@example.org", "social-media"),
        ("2026-09-21", "08:00", "follow-up 1", "dan@example.org", "social-media"),
        ("2026-09-22", "10:00", "follow-up 1", "dan@example.org", "lone-working")]
    assert "waited from Tue 8 Sep 10:00: one email a day" in planned[1][5]
    assert "waited from Mon 14 Sep 10:00: one email a day" in planned[3][5]
    assert "7 messages in 7 emails" in result.output
    # The console counts the same (the database counting each combination of states).
    counted = _counted(config, at("2026-09-01 10:01"), at("2026-09-22 23:00"))
    assert counted == Counter((f"{d} {t}", what, policy) for d, t, what, _, policy, _ in planned)

    sent = []
    day = dt.date(2026, 9, 2)
    while day < dt.date(2026, 9, 23):
        for hour in ("08:00", "10:00"):
            before = len(smtp.inbox)
            _tick(cli, config, f"{day.isoformat()} {hour}")
            sent += [(day.isoformat(), hour, _to(m)) for m in smtp.inbox.messages[before:]]
        day += dt.timedelta(days=1)
    assert sorted(sent) == sorted((day, time, who) for day, time, _, who, _, _ in planned)


def _counted(config, start: dt.datetime, end: dt.datetime) -> Counter:
    """The console's timeline: how many each (local moment, what, policy) sends to."""
    from workflow import config as config_mod, timeline
    from workflow.app import create_app

    app = create_app(config_mod.load(config))
    svc = app.extensions["signoff"]
    with app.app_context(), svc.db.read() as session:
        found = timeline.batches(svc, session, start, end)
    svc.db.dispose()
    return Counter({(f"{b.when.astimezone(svc.tz):%Y-%m-%d %H:%M}", b.what, b.policy): b.count
                    for b in found if b.what != "head-teacher digest"})


def test_no_one_gets_two_scheduled_emails_on_one_day_over_a_term(setup, cli, smtp):
    """Three policies on different clocks, ticked at 08:00 and 10:00 for four weeks: everyone is
    asked for each, chased for each, and never twice in one day."""
    config = setup(extra=CODE_OF_CONDUCT + LONE_WORKING_AT_TEN)
    day, per_day = dt.date(2026, 9, 1), Counter()
    while day < dt.date(2026, 9, 29):
        for hour in ("08:00", "10:00"):
            before = len(smtp.inbox)
            _tick(cli, config, f"{day.isoformat()} {hour}")
            per_day.update((_to(m), day) for m in smtp.inbox.messages[before:]
                           if "head@" not in _to(m))
        day += dt.timedelta(days=1)
    assert max(per_day.values()) == 1, [k for k, n in per_day.items() if n > 1]
    titles = Counter()
    for message in smtp.inbox.messages:
        if "head@" in _to(message):
            continue
        text = parts(message)[0]
        for title in ("Use of Social Media Policy", "Staff Code of Conduct",
                      "Lone Working Policy"):
            titles[_to(message), title] += title in text
    for who in ("amira", "ben", "chloe"):
        for title in ("Use of Social Media Policy", "Staff Code of Conduct",
                      "Lone Working Policy"):
            # A first reminder and every follow-up its schedule has.
            assert titles[f"{who}@example.org", title] >= 2, (who, title, titles)


def test_the_digest_names_each_overdue_person_once_with_each_policy(setup, cli, smtp):
    config = setup(extra=CODE_OF_CONDUCT)
    _tick(cli, config, "2026-09-01 08:00")
    chloe = smtp.inbox.to("chloe@example.org")[0]
    confirm_by_page(config, _links(chloe)[1], at("2026-09-02 10:00"))  # her code of conduct
    for day in ("2026-09-08", "2026-09-15", "2026-09-23"):
        _tick(cli, config, f"{day} 08:00")
    digests = smtp.inbox.to("head@example.org")
    assert len(digests) == 1
    # Its subject has a dash, and reads without a leading space.
    assert digests[0]["Subject"].startswith("3 people have not confirmed the policies")
    text, html = parts(digests[0])
    assert text.count("amira@example.org") == 1
    assert ("- Amira Khan <amira@example.org>, Practitioner, 2 policies:\n"
            "    · Use of Social Media Policy: asked to confirm by Tuesday 22 September 2026"
            in text)
    assert "    · Staff Code of Conduct: asked to confirm by" in text
    assert ("- Chloe Evans <chloe@example.org>, Teacher — Use of Social Media Policy: asked to "
            "confirm by" in text), text
    assert html.count("amira@example.org") == 1 and 'rowspan="2"' in html


def test_an_admins_fresh_link_goes_the_same_day_on_its_own(admin, app, cli, console, smtp):
    """A link the office asks for is not a scheduled email: it goes with the next tick, even on a
    day the person has had one."""
    from sqlalchemy import select

    from workflow.models import Outbox

    _tick(cli, console, "2026-09-08 08:00")  # everyone's first follow-up
    before = len(smtp.inbox)
    person = staff_id(app, "ben@example.org")
    assert post(admin, f"/admin/people/{person}/social-media/resend").status_code == 303
    _tick(cli, console, "2026-09-08 11:00")
    assert [_to(m) for m in smtp.inbox.messages[before:]] == ["ben@example.org"]
    with app.extensions["signoff"].db.read() as session:
        rows = session.scalars(select(Outbox).where(Outbox.staff_id == person)).all()
    assert [(r.stage, r.status) for r in rows] == [(0, "sent"), (1, "sent"), (None, "sent")]


class Died(BaseException):
    """The process dying at a chosen moment (not an error anything should catch)."""


def test_a_run_that_dies_after_sending_an_email_of_two_policies_sends_it_once_more(
        setup, cli, smtp, monkeypatch):
    """The outbox's guarantee, for an email of several rows: its rows are claimed, sent and
    recorded together; a run killed between the send and the record sends that one email again
    once its lease has run out, with both policies, and nobody else hears twice."""
    from delivery_helpers import table
    from workflow import outbox as outbox_mod
    from workflow.models import Event, Outbox

    config = setup(extra=CODE_OF_CONDUCT)
    real, calls = outbox_mod.Sender._sent, []

    def dies_on_the_second(sender, job, composed):
        calls.append(job)
        if len(calls) == 2:
            raise Died()
        real(sender, job, composed)

    monkeypatch.setattr(outbox_mod.Sender, "_sent", dies_on_the_second)
    monkeypatch.setattr(outbox_mod.Sender, "release", lambda sender, job: None)
    try:
        cli("tick", "--at", at("2026-09-01 08:00").isoformat(), config=config)
    except Died:
        pass
    else:
        raise AssertionError("the run did not die")
    monkeypatch.undo()
    assert len(calls[1].items) == 2  # the email on the wire carried both policies
    assert sorted(r.status for r in table(config, Outbox)) == ["pending"] * 4 + ["sent"] * 2
    _tick(cli, config, "2026-09-01 08:01")  # inside the lease: the third person only
    assert len(smtp.inbox) == 3
    _tick(cli, config, "2026-09-01 08:20")
    received = Counter(_to(m) for m in smtp.inbox.messages)
    assert sorted(received.values()) == [1, 1, 2]
    twice = next(who for who, n in received.items() if n == 2)
    assert [len(_links(m)) for m in smtp.inbox.to(twice)] == [2, 2]
    assert {r.status for r in table(config, Outbox)} == {"sent"}
    assert Counter(e.kind for e in table(config, Event))["invited"] == 6
