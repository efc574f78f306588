"""What the plan says is what happens, on both databases: a change made mid-cycle acts on the
requests already open (the person page, the report and the digest follow it, and a date an email
named never moves earlier); closed days do not count; a mail outage or downtime never sends a
policy twice, two digests at once, or a date that has passed; the plan lists what is queued,
as CSV, and the ticks then send exactly that. And one module writes a request's state."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from admin_helpers import (admin, app, clock, console, policy_fields,  # noqa: F401
                           save_policy, staff_id)
from conftest import ROOT, at, free_port
from helpers import flat, parts

STAFF = ["amira@example.org", "ben@example.org", "chloe@example.org"]


def _db(config: Path):
    from workflow import config as config_mod
    from workflow.db import Database

    return Database(config_mod.load(config).database.url)


def _requests(config: Path) -> dict[str, tuple]:
    """Each person's (overdue_at, named_due, next_check_at) in the social media policy."""
    from workflow.models import Request, Staff

    db = _db(config)
    try:
        with db.read() as session:
            return {email: (overdue, named, next_check) for email, overdue, named, next_check
                    in session.execute(select(Staff.email, Request.overdue_at, Request.named_due,
                                              Request.next_check_at)
                                       .join(Request, Request.staff_id == Staff.id))}
    finally:
        db.dispose()


def _mail_down(config: Path) -> str:
    """Point the config at a port nothing listens on; returns the text to put back."""
    text = config.read_text()
    config.write_text(re.sub(r"(?m)^port = \d+$", f"port = {free_port()}", text, count=1))
    return text


def _report(cli, config: Path, when: str) -> dict[str, dict]:
    result = cli("report", "--format", "csv", "--at", at(when).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return {row["email"]: row for row in csv.DictReader(io.StringIO(result.output))}


def _plan_csv(cli, config: Path, start: str, end: str) -> list[dict]:
    result = cli("plan", "--format", "csv", "--from", at(start).isoformat(), "--to",
                 at(end).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.output)))


def test_a_schedule_saved_mid_cycle_moves_every_date_to_confirm_by_and_the_digest_follows(
        admin, app, cli, console, smtp, clock):
    """The office gives everyone 35 days instead of 21, after the first reminders named 22 Sep:
    the stored dates, the person page, the report and the digest all say 6 October at once."""
    from workflow.models import Policy

    with app.extensions["signoff"].db.read() as session:
        policy_id = session.scalar(select(Policy.id).where(Policy.slug == "social-media"))
    before = _requests(console)
    assert {named for _, named, _ in before.values()} == {dt.date(2026, 9, 22)}

    fields = {**policy_fields(admin, policy_id), "escalate_after_days": "35"}
    _, saved = save_policy(admin, f"/admin/policies/{policy_id}", fields)
    assert saved.status_code == 303, saved.get_data(as_text=True)

    after = _requests(console)
    assert {overdue for overdue, _, _ in after.values()} == {at("2026-10-07 00:00")}
    page = admin.get(f"/admin/people/{staff_id(app, 'amira@example.org')}").get_data(as_text=True)
    assert "Confirm by Tue 6 Oct 2026" in flat(page)
    assert {r["confirm_by"] for r in _report(cli, console, "2026-09-02 10:00").values()} \
        == {"2026-10-06"}
    # A shorter rule never moves a date an email has named earlier.
    _, saved = save_policy(admin, f"/admin/policies/{policy_id}",
                           {**fields, "escalate_after_days": "10"})
    assert saved.status_code == 303
    assert {overdue for overdue, _, _ in _requests(console).values()} \
        == {at("2026-09-23 00:00")}  # 22 September, as the first reminder said
    _, saved = save_policy(admin, f"/admin/policies/{policy_id}", fields)
    assert saved.status_code == 303
    smtp.inbox.clear()
    # 23 September: on the old rule everyone was overdue; now nobody is, and no digest goes.
    assert cli("tick", "--at", at("2026-09-23 08:00").isoformat(), config=console).exit_code == 0
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages) == STAFF
    assert all("6 October" in m["Subject"] for m in smtp.inbox.messages)


def test_closed_days_do_not_count_towards_the_date_to_confirm_by():
    """21 days from Tue 8 Dec with the setting closed 19 Dec to 4 Jan: 10 open days before the
    closure and 11 after it, so Fri 15 Jan, not the first morning back."""
    from zoneinfo import ZoneInfo

    from workflow import config as config_mod
    from workflow import planner
    from workflow.calendar import Calendar

    schedule = config_mod.parse_schedule({"escalate_after_days": 21,
                                          "reminder_after_days": [7, 14]}, "t", "schedule")
    christmas = config_mod.Closure("Christmas", dt.date(2026, 12, 19), dt.date(2027, 1, 4))
    cal = Calendar(schedule, ZoneInfo("Europe/London"), (christmas,))
    sent = at("2026-12-08 08:00")
    assert planner.due_date(sent, cal) == dt.date(2027, 1, 15)
    # Follow-ups too: 7 open days is Tue 15 Dec; 14 is 10 before and 4 after, Fri 8 Jan.
    assert planner.followup_due(sent, 1, cal) == cal.at_send_time(dt.date(2026, 12, 15))
    assert planner.followup_due(sent, 2, cal) == cal.at_send_time(dt.date(2027, 1, 8))
    # Without the closure: 29 December, a working day.
    plain = Calendar(schedule, ZoneInfo("Europe/London"))
    assert planner.due_date(sent, plain) == dt.date(2026, 12, 29)
    # A closure of a hundred years costs a jump, not a walk.
    long = Calendar(schedule, ZoneInfo("Europe/London"), (config_mod.Closure(
        "Long", dt.date(2026, 12, 10), dt.date(2126, 12, 9)),))
    assert long.open_days_after(dt.date(2026, 12, 8), 3) == dt.date(2126, 12, 11)


def test_after_a_mail_outage_each_person_gets_one_email_naming_the_policy_once(setup, cli, smtp):
    """Mail is down from the day after the first reminders until after follow-up 2 is due: the
    follow-up 1 still waiting is not sent beside follow-up 2."""
    config = setup()
    assert cli("tick", "--at", at("2026-09-01 09:00").isoformat(), config=config).exit_code == 0
    good = _mail_down(config)
    for when in ("2026-09-08 08:00", "2026-09-15 08:00"):
        result = cli("tick", "--at", at(when).isoformat(), config=config)
        assert result.exit_code == 1 and "cannot reach the mail server" in result.output
    config.write_text(good)
    smtp.inbox.clear()
    assert cli("tick", "--at", at("2026-09-15 09:00").isoformat(), config=config).exit_code == 0
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages) == STAFF
    for message in smtp.inbox.messages:
        text, html = parts(message)
        assert len(re.findall(r"http://signoff\.test/c/\S+", text)) == 1, text
        assert "Please confirm 2 policies" not in message["Subject"]


def test_after_downtime_an_email_says_the_date_has_passed_instead_of_naming_it(setup, cli, smtp):
    config = setup()
    assert cli("tick", "--at", at("2026-09-01 09:00").isoformat(), config=config).exit_code == 0
    smtp.inbox.clear()
    # Nothing ran from 2 to 23 September; the date named was 22 September.
    assert cli("tick", "--at", at("2026-09-24 08:00").isoformat(), config=config).exit_code == 0
    followups = [m for m in smtp.inbox.messages if "Reminder" in m["Subject"]]
    assert len(followups) == 3
    for message in followups:
        text, html = parts(message)
        assert "22 September" not in message["Subject"] + text + html
        assert "the date to confirm by has passed" in message["Subject"]
        assert "has passed" in flat(text) and "as soon as you can" in flat(html)


def test_one_digest_at_a_time_while_the_mail_server_is_down(setup, cli, smtp):
    from workflow.models import Outbox

    config = setup()
    assert cli("tick", "--at", at("2026-09-01 09:00").isoformat(), config=config).exit_code == 0
    good = _mail_down(config)
    for when in ("2026-09-23 08:00", "2026-09-30 08:00"):
        assert cli("tick", "--at", at(when).isoformat(), config=config).exit_code == 1
    db = _db(config)
    try:
        with db.read() as session:
            assert session.scalar(select(func.count()).where(
                Outbox.kind == "digest", Outbox.status.in_(("pending", "retrying")))) == 1
    finally:
        db.dispose()
    config.write_text(good)
    smtp.inbox.clear()
    assert cli("tick", "--at", at("2026-09-30 09:00").isoformat(), config=config).exit_code == 0
    digests = smtp.inbox.to("head@example.org")
    assert len(digests) == 1 and digests[0]["Subject"].startswith("3 people have not confirmed")


def test_the_plan_lists_what_is_queued_and_the_tick_sends_exactly_that(setup, cli, smtp):
    """The first reminders are queued while the mail server is down: `plan --format csv` lists
    them (with the date each will name), the follow-ups and the digest; then ticks at each send
    time send exactly the plan's rows."""
    config = setup()
    good = _mail_down(config)
    assert cli("tick", "--at", at("2026-09-01 08:00").isoformat(), config=config).exit_code == 1
    config.write_text(good)
    rows = _plan_csv(cli, config, "2026-09-01 08:30", "2026-09-24 23:00")
    assert list(rows[0]) == ["send_at", "email", "name", "policy", "kind", "confirm_by"]
    first = [r for r in rows if r["kind"] == "reminder"]
    assert sorted(r["email"] for r in first) == STAFF
    assert {r["send_at"] for r in first} == {"2026-09-01T08:30:00+01:00"}
    assert {r["confirm_by"] for r in first} == {"2026-09-22"}
    assert {(r["kind"], r["send_at"][:10]) for r in rows if r["kind"] != "reminder"} == {
        ("followup", "2026-09-08"), ("followup", "2026-09-15"), ("digest", "2026-09-23")}
    assert [r["policy"] for r in rows if r["kind"] == "digest"] == [""]
    smtp.inbox.clear()
    sent = []
    for moment in sorted({r["send_at"] for r in rows}):
        before = len(smtp.inbox.messages)
        assert cli("tick", "--at", moment, config=config).exit_code == 0
        sent.extend((moment, m["To"].addresses[0].addr_spec)
                    for m in smtp.inbox.messages[before:])
    assert sorted(sent) == sorted((r["send_at"], r["email"]) for r in rows)


def test_the_report_says_the_date_to_confirm_by_before_and_after_the_first_reminder(
        setup, cli, smtp):
    config = setup()
    # Before the cycle's first tick: the date their first reminder will name when it goes.
    assert {r["confirm_by"] for r in _report(cli, config, "2026-09-01 08:00").values()} \
        == {"2026-09-22"}
    assert cli("tick", "--at", at("2026-09-01 09:00").isoformat(), config=config).exit_code == 0
    report = _report(cli, config, "2026-09-02 10:00")
    assert {r["confirm_by"] for r in report.values()} == {"2026-09-22"}
    text, _ = parts(smtp.inbox.to("amira@example.org")[-1])
    assert "Tuesday 22 September 2026" in text


# --- one home for a request's life -------------------------------------------------------------

STATE = {"stage_sent", "reminded_at", "last_message_at", "next_check_at", "overdue_at",
         "named_due", "due_extended_to", "closed_at", "exempt_at", "exempt_reason", "dropped_at",
         "declined_at", "escalated_at", "round"}


def test_only_requests_py_writes_a_requests_state():
    """An assignment to one of a request's state columns, or an UPDATE of the request table,
    anywhere in the package but workflow/requests.py, is a second home for its life."""
    found = []
    for path in sorted((ROOT / "workflow").rglob("*.py")):
        if path.name in ("requests.py", "models.py"):
            continue
        source = path.read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                for each in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(each, ast.Attribute) and each.attr in STATE \
                            and not (isinstance(each.value, ast.Name)
                                     and each.value.id in ("decline", "self")):
                        found.append(f"{path.name}:{node.lineno}: .{each.attr} =")
        for match in re.finditer(r"update\((Request\b|Request\.__table__)", source):
            found.append(f"{path.name}:{source[:match.start()].count(chr(10)) + 1}: {match[0]}")
    assert found == []


_REFUSE = {
    "sqlite": ["CREATE TRIGGER full_disk BEFORE UPDATE OF status ON outbox "
               "WHEN NEW.status = 'sent' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"],
    "postgresql": ["CREATE FUNCTION full_disk() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION "
                   "'could not extend file: No space left on device'; END $$ LANGUAGE plpgsql",
                   "CREATE TRIGGER full_disk BEFORE UPDATE ON outbox FOR EACH ROW "
                   "WHEN (NEW.status = 'sent') EXECUTE FUNCTION full_disk()"],
}
_ALLOW = {"sqlite": ["DROP TRIGGER full_disk"],
          "postgresql": ["DROP TRIGGER full_disk ON outbox", "DROP FUNCTION full_disk()"]}


@pytest.mark.slow
def test_a_sent_email_whose_outcome_cannot_be_written_is_recorded_once_the_database_takes_writes(
        setup, cli, smtp):
    """The database refuses to record a sent email (as a full disk does): the run stops, claims
    nothing more, and records it as soon as writes work again; nobody gets it twice."""
    import time

    from sqlalchemy import text

    from helpers import start, stop
    from workflow.models import Outbox

    config = setup()
    db = _db(config)
    engine = "sqlite" if db.url.startswith("sqlite") else "postgresql"
    try:
        with db.write() as session:
            for statement in _REFUSE[engine]:
                session.execute(text(statement))
        proc, log = start(config, "tick", "--at", at("2026-09-01 09:00").isoformat())
        deadline = time.monotonic() + 30
        while not smtp.inbox.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the run is retrying the write meanwhile, and sends nothing more
        assert len(smtp.inbox.messages) == 1
        with db.write() as session:
            for statement in _ALLOW[engine]:
                session.execute(text(statement))
        assert proc.wait(timeout=60) == 1
        output = log.read_text()
        assert "would not record it" in output and "Traceback" not in output, output
        with db.read() as session:
            assert session.scalar(select(func.count()).where(Outbox.status == "sent")) == 1
        # The rest go with the next tick; the first never again.
        assert cli("tick", "--at", at("2026-09-01 09:10").isoformat(),
                   config=config).exit_code == 0
        assert sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages) == STAFF
    finally:
        db.dispose()
