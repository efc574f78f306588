"""Every table and query is scoped by setting, on both databases: a second setting in the same
database (its own staff, one with the same address as one of ours and one in a group of the same
name as one of our audiences; its own policy, closure, cycle, requests and emails) is never asked,
counted, listed, reported, exported, made a leaver, sent to or shown, and never changes what ours
does: its closure does not stop our opening day, its emails are neither sent nor cancelled by our
tick."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import tomllib
from dataclasses import dataclass

import pytest
import time_machine
from sqlalchemy import func, select

from admin_helpers import ADMIN, PASSWORD, post, sign_in
from conftest import at
from helpers import flat, parts
from workflow import config as config_mod
from workflow.db import Database
from workflow.models import (Closure, Cycle, Event, Outbox, Policy, PolicyVersion, Request,
                             Setting, Staff)
from workflow.outbox import request_key
from workflow.policies import setting_id

# Ours: the social media policy for everyone, lone working for the site group, a half term.
OURS = """
[[policy]]
slug = "lone-working"
title = "Lone Working Policy"
text = \"\"\"# Lone Working Policy

Tell the office before you work alone on site.
\"\"\"
statements = ["I tell the office before I work alone."]
audience = ["site"]

[[closure]]
name = "Half term"
from = "2026-10-26"
to = "2026-10-30"
"""

ROSTER = """\
name,email,groups
Amira Khan,amira@example.org,teaching
Ben Lewis,ben@example.org,Site; first aid
Chloe Evans,chloe@example.org,
"""
OUR_PEOPLE = ["amira@example.org", "ben@example.org", "chloe@example.org"]
# The other setting's people, as they would show anywhere: none of these may.
THEIR_NAMES = ["Anna Otherton", "Sam Sitewell", "Olive Outsider"]
THEIR_ADDRESSES = ["sam@other.example", "olive@other.example"]  # and Anna's, which is Amira's
THEIR_WORDS = [*THEIR_NAMES, *THEIR_ADDRESSES, "Fire Safety", "fire-safety", "Other INSET day",
               "Other Nursery", "550 5.1.1 the other setting"]


@dataclass(frozen=True)
class Other:
    """The second setting's rows."""

    setting: int
    anna: int  # amira@example.org, as our Amira is
    sam: int  # in the group "Site", as our lone working policy's audience is named
    olive: int
    policy: int
    closure: int
    cycle: int


def _other_setting(config) -> Other:
    """A second setting, written straight to the database as a later version would keep one: its
    own staff, policy (for everyone), closure over our opening day, open cycle with two
    requests: Olive's overdue, her follow-up waiting in the outbox; Sam's first email failed."""
    db = Database(config_mod.load(config).database.url)
    made = at("2026-08-20 12:00")
    try:
        with db.write() as session:
            ours = session.scalars(select(Setting).order_by(Setting.id)).first()
            setting = Setting(name="Other Nursery", timezone="Europe/London",
                              schedule=dict(ours.schedule))
            session.add(setting)
            session.flush()
            people = [Staff(setting_id=setting.id, email=email, name=name, first_name=first,
                            groups=groups, created_at=made, updated_at=made)
                      for email, name, first, groups in (
                          ("amira@example.org", "Anna Otherton", "Anna", ["teaching"]),
                          ("sam@other.example", "Sam Sitewell", "Sam", ["Site"]),
                          ("olive@other.example", "Olive Outsider", "Olive", []))]
            session.add_all(people)
            policy = Policy(setting_id=setting.id, slug="fire-safety",
                            title="Fire Safety Procedure", schedule={}, state="active", position=0)
            session.add(policy)
            closure = Closure(setting_id=setting.id, name="Other INSET day",
                              first=dt.date(2026, 9, 1), last=dt.date(2026, 9, 1), created_at=made)
            session.add(closure)
            session.flush()
            session.add(PolicyVersion(policy_id=policy.id, sha256="0" * 64,
                                      content="# Fire Safety Procedure\n\nKnow your exits.\n",
                                      statements=["I know the exits."], created_at=made))
            cycle = Cycle(policy_id=policy.id, year=2026, opens_at=at("2026-08-24 08:00"),
                          created_at=made)
            session.add(cycle)
            session.flush()
            anna, sam, olive = people
            olives = Request(cycle_id=cycle.id, staff_id=olive.id, created_at=made, stage_sent=0,
                             reminded_at=at("2026-08-24 08:00"),
                             last_message_at=at("2026-08-24 08:00"),
                             next_check_at=at("2026-08-31 08:00"),
                             overdue_at=at("2026-08-29 00:00"))
            sams = Request(cycle_id=cycle.id, staff_id=sam.id, created_at=made, stage_sent=0,
                           next_check_at=at("2026-08-31 08:00"))
            session.add_all([olives, sams])
            session.flush()
            waiting = Outbox(key=request_key(olives.id, 1), kind="followup", stage=1,
                             request_id=olives.id, staff_id=olive.id, to_email=olive.email,
                             to_name=olive.name, created_at=made, status="pending",
                             next_attempt_at=at("2026-08-31 08:00"))
            failed = Outbox(key=request_key(sams.id, 0), kind="reminder", stage=0,
                            request_id=sams.id, staff_id=sam.id, to_email=sam.email,
                            to_name=sam.name, created_at=made, status="failed", attempts=1,
                            failed_at=at("2026-08-24 08:00"), next_attempt_at=made,
                            last_error="550 5.1.1 the other setting has no such user")
            session.add_all([waiting, failed])
            session.add(Event(at=made, kind="staff_added", staff_id=anna.id,
                              detail={"name": anna.name}))
            session.flush()
            return Other(setting.id, anna.id, sam.id, olive.id, policy.id, closure.id, cycle.id)
    finally:
        db.dispose()


def _theirs(config, other: Other) -> dict:
    """What the second setting has now: its people (name, active), requests and emails."""
    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return {
                "people": sorted(session.execute(select(Staff.name, Staff.email, Staff.active)
                                                 .where(Staff.setting_id == other.setting))),
                "requests": sorted(session.execute(
                    select(Request.staff_id, Request.cycle_id, Request.closed_at)
                    .join(Staff, Staff.id == Request.staff_id)
                    .where(Staff.setting_id == other.setting))),
                "emails": sorted(session.execute(
                    select(Outbox.id, Outbox.status, Outbox.next_attempt_at)
                    .join(Staff, Staff.id == Outbox.staff_id)
                    .where(Staff.setting_id == other.setting))),
            }
    finally:
        db.dispose()


def _digests(config) -> list[str]:
    """The keys of the head teacher's digests queued so far."""
    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return list(session.scalars(select(Outbox.key).where(Outbox.kind == "digest")))
    finally:
        db.dispose()


@pytest.fixture
def two_settings(setup, cli):
    """Our setting as `init` and a roster import make it, with an admin; then the other one."""
    config = setup(ROSTER, extra=OURS)
    assert cli("admin", "add", ADMIN, "--password-stdin", config=config,
               input=PASSWORD + "\n").exit_code == 0
    return config, _other_setting(config)


def _tick(cli, config, when: str):
    result = cli("tick", "--at", at(when).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return result


def _to(message) -> str:
    return message["To"].addresses[0].addr_spec


# A line of `signoff plan`: when, what, to whom (their address), which policy.
PLAN_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \w{3} \d\d:\d\d)  (.{20}) [^<\n]*<([^>]+)>  \[([\w-]+)\]", re.M)


def _none_of_theirs(text: str) -> None:
    for word in THEIR_WORDS:
        assert word not in text, word


def test_our_opening_day_asks_our_staff_only_and_their_closure_stops_nothing(two_settings, cli,
                                                                            smtp):
    config, other = two_settings
    before = _theirs(config, other)
    plan = cli("plan", "--from", at("2026-09-01 08:00").isoformat(), "--to",
               at("2026-09-16 00:00").isoformat(), config=config)
    assert plan.exit_code == 0, plan.output
    sends = [(when, what.strip(), who, policy)
             for when, what, who, policy in PLAN_LINE.findall(plan.output)]
    # Our opening day's reminders go on it, whatever their closure: to each of our people for
    # each of our policies that is for them, and to none of theirs.
    assert sorted((who, policy) for when, what, who, policy in sends
                  if when == "2026-09-01 Tue 08:00" and what == "first reminder") == [
        ("amira@example.org", "social-media"), ("ben@example.org", "lone-working"),
        ("ben@example.org", "social-media"), ("chloe@example.org", "social-media")]
    assert {who for _, _, who, _ in sends} == set(OUR_PEOPLE)
    assert {policy for _, _, _, policy in sends} == {"social-media", "lone-working"}
    _none_of_theirs(plan.output)  # nor moved for their closure ("after Other INSET day")

    result = _tick(cli, config, "2026-09-01 08:00")
    # Four reminders in three emails, on the day their closure covers; nothing of theirs queued,
    # sent, cancelled or left "waiting".
    assert "4 queued, 3 sent, 0 retrying, 0 failed" in result.output, result.output
    assert "waiting" not in result.output and "no longer needed" not in result.output
    assert sorted(_to(m) for m in smtp.inbox.messages) == OUR_PEOPLE
    amira, = smtp.inbox.to("amira@example.org")
    text, html = parts(amira)
    assert "Dear Amira" in text and "Anna" not in text + html
    assert "Use of Social Media Policy" in text and "Lone Working" not in text
    # Their Sam is in a group called "Site" too: our lone working policy is for our Ben alone.
    ben, = smtp.inbox.to("ben@example.org")
    assert "Lone Working Policy" in parts(ben)[0]
    for message in smtp.inbox.messages:
        _none_of_theirs(flat(" ".join(parts(message))) + message["Subject"])
    assert _theirs(config, other) == before


def test_report_export_and_a_full_import_are_ours_alone(two_settings, cli):
    config, other = two_settings
    _tick(cli, config, "2026-09-01 08:00")
    report = cli("report", "--format", "csv", "--at", at("2026-09-02 10:00").isoformat(),
                 config=config)
    assert report.exit_code == 0, report.output
    assert sorted((r["name"], r["email"], r["policy"], r["status"])
                  for r in csv.DictReader(io.StringIO(report.stdout))) == [
        ("Amira Khan", "amira@example.org", "social-media", "pending"),
        ("Ben Lewis", "ben@example.org", "lone-working", "pending"),
        ("Ben Lewis", "ben@example.org", "social-media", "pending"),
        ("Chloe Evans", "chloe@example.org", "social-media", "pending")]
    text = cli("report", "--at", at("2026-09-02 10:00").isoformat(), config=config).output
    assert "social-media: confirmed 0 of 3" in text and "lone-working: confirmed 0 of 1" in text
    _none_of_theirs(text)

    export = cli("policy", "export", config=config)
    assert export.exit_code == 0, export.output
    tables = tomllib.loads(export.output)
    assert [p["slug"] for p in tables["policy"]] == ["social-media", "lone-working"]
    assert [c["name"] for c in tables["closure"]] == ["Half term"]
    _none_of_theirs(export.output)

    # The whole staff list, without Chloe, and Amira with her new name: their Anna (the same
    # address) keeps hers, and none of theirs is a leaver.
    path = config.parent / "full.csv"
    path.write_text("name,email,groups\nAmira Khan-Smith,amira@example.org,teaching\n"
                    "Ben Lewis,ben@example.org,Site; first aid\n")
    before = _theirs(config, other)
    dry = cli("staff", "import", "--full", "--dry-run", str(path), config=config)
    assert dry.exit_code == 0, dry.output
    assert "would be 0 added, 1 updated, 1 made inactive, 1 unchanged" in dry.output
    assert "made inactive (not in the full list): Chloe Evans <chloe@example.org>" in dry.output
    _none_of_theirs(dry.output)
    done = cli("staff", "import", "--full", str(path), config=config)
    assert done.exit_code == 0, done.output
    assert "0 added, 1 updated, 1 made inactive, 1 unchanged" in done.output
    assert [line for line in done.output.splitlines() if "made inactive (" in line] == [
        "  made inactive (not in the full list): Chloe Evans <chloe@example.org>"]
    assert _theirs(config, other) == before
    report = cli("report", "--format", "csv", "--at", at("2026-09-02 11:00").isoformat(),
                 config=config).stdout
    assert sorted({(r["name"], r["email"]) for r in csv.DictReader(io.StringIO(report))}) == [
        ("Amira Khan-Smith", "amira@example.org"), ("Ben Lewis", "ben@example.org")]


def test_the_head_teachers_digest_names_our_overdue_people_only(two_settings, cli, smtp):
    config, _ = two_settings
    # Their Olive has been overdue since 29 August: our digest waits for ours (23 September).
    for day in ("2026-09-01", "2026-09-08", "2026-09-15", "2026-09-22"):
        _tick(cli, config, f"{day} 08:00")
    assert smtp.inbox.to("head@example.org") == []
    assert _digests(config) == []  # not even one queued and found to name nobody
    _tick(cli, config, "2026-09-23 08:00")
    digest, = smtp.inbox.to("head@example.org")
    assert _digests(config) == ["digest:2026-09-23"]
    text, html = parts(digest)
    assert digest["Subject"].strip().startswith("3 people have not confirmed"), digest["Subject"]
    for person in ("Amira Khan <amira@example.org>", "Ben Lewis <ben@example.org>",
                   "Chloe Evans <chloe@example.org>"):
        assert person in text
    assert "Use of Social Media Policy: confirmed 0 of 3." in text
    assert "Lone Working Policy: confirmed 0 of 1." in text
    _none_of_theirs(text + flat(html) + digest["Subject"])
    assert not any(_to(m) in THEIR_ADDRESSES for m in smtp.inbox.messages)


@pytest.fixture
def console(two_settings, cli):
    """A signed-in admin's client on 2 September, after our opening day's tick."""
    from workflow.app import create_app

    config, other = two_settings
    _tick(cli, config, "2026-09-01 08:00")
    application = create_app(config_mod.load(config))
    application.config["TESTING"] = False  # CSRF and Flask-Login as in production
    with time_machine.travel(at("2026-09-02 10:00"), tick=False):
        client = application.test_client()
        assert sign_in(client).status_code == 303
        yield client, application, config, other
    application.extensions["signoff"].db.dispose()


def _page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.get_data(as_text=True)


def _ours(app, email: str) -> int:
    """Our person's id, by their address (which may be someone else's in the other setting)."""
    with app.extensions["signoff"].db.read() as session:
        return session.scalar(select(Staff.id).where(Staff.email == email,
                                                     Staff.setting_id == setting_id(session)))


def test_the_console_shows_our_setting_only(console):
    client, app, _, other = console
    dashboard = _page(client, "/admin/")
    assert "Use of Social Media Policy: 2026 cycle" in dashboard
    assert "Confirmed 0 of 3" in dashboard and "Confirmed 0 of 1" in dashboard
    assert "Delivery failures" in dashboard and "None: every email so far was accepted" in dashboard
    _none_of_theirs(dashboard)

    people = _page(client, "/admin/people")
    assert "3 people on the roster." in people
    for name in ("Amira Khan", "Ben Lewis", "Chloe Evans"):
        assert name in people
    _none_of_theirs(people)
    found = _page(client, "/admin/people?q=amira")
    assert "1 of 3 people matching" in found and "Amira Khan" in found
    _none_of_theirs(found)
    assert "0 of 3 people matching" in _page(client, "/admin/people?q=other")
    overdue = _page(client, "/admin/people?status=overdue")  # their Olive is overdue
    assert "0 of 3 people overdue" in overdue

    amira = _page(client, f"/admin/people/{_ours(app, 'amira@example.org')}")
    assert "Amira Khan" in amira and "Use of Social Media Policy" in amira
    _none_of_theirs(amira)
    for theirs in (other.anna, other.sam, other.olive):
        _page(client, f"/admin/people/{theirs}", 404)
        _page(client, f"/admin/people/{theirs}/edit", 404)
    assert post(client, f"/admin/people/{other.olive}/active", {"active": "no"}).status_code == 404
    assert post(client, f"/admin/people/{other.sam}/social-media/resend").status_code == 404
    assert post(client, f"/admin/people/{other.sam}/lone-working/exempt", {"reason": "Leave"},
                prefix="lone-working-exempt").status_code == 404

    policies = _page(client, "/admin/policies")
    assert "Use of Social Media Policy" in policies and "Lone Working Policy" in policies
    _none_of_theirs(policies)
    _page(client, f"/admin/policies/{other.policy}", 404)
    assert post(client, f"/admin/policies/{other.policy}/state",
                {"state": "paused"}).status_code == 404

    closures = _page(client, "/admin/closures")
    assert "Half term" in closures
    _none_of_theirs(closures)
    assert post(client, f"/admin/closures/{other.closure}/remove").status_code == 404

    schedule = _page(client, "/admin/schedule")
    assert "Half term" in schedule and "Lone Working Policy" in schedule
    _none_of_theirs(schedule)
    who = re.search(r'href="(/admin/schedule/who\?[^"]*policy=lone-working[^"]*)"', schedule)
    names = _page(client, who.group(1).replace("&amp;", "&"))
    assert "Ben Lewis" in names
    _none_of_theirs(names)
    _page(client, "/admin/schedule/who?policy=fire-safety&at=2026-09-08T07:00:00%2B00:00"
                  "&what=follow-up+1", 404)

    evidence = _page(client, "/admin/evidence")
    ours_cycles = re.findall(r'href="/admin/evidence/(\d+)"', evidence)
    assert len(ours_cycles) == 2 and str(other.cycle) not in ours_cycles
    _none_of_theirs(evidence)
    for cycle in ours_cycles:
        page = _page(client, f"/admin/evidence/{cycle}")
        assert "Amira Khan" in page or "Ben Lewis" in page
        _none_of_theirs(page)
        export = _page(client, f"/admin/evidence/{cycle}/export.csv")
        assert "ben@example.org" in export
        _none_of_theirs(export)
    _page(client, f"/admin/evidence/{other.cycle}", 404)
    _page(client, f"/admin/evidence/{other.cycle}/export.csv", 404)

    # Their address is no one's here: the office can add Olive to our roster, as ours.
    added = post(client, "/admin/people/new", {"name": "Olive Ours", "email": "olive@other.example",
                                               "active": "y"})
    assert added.status_code == 303, added.get_data(as_text=True)
    ours = _ours(app, "olive@other.example")
    assert ours not in (other.olive, None)
    assert added.headers["Location"].endswith(f"/admin/people/{ours}")
    assert "Olive Ours" in _page(client, f"/admin/people/{ours}")
    # …and Amira's edit is hers, whoever else has her address.
    edited = post(client, f"/admin/people/{_ours(app, 'amira@example.org')}/edit",
                  {"name": "Amira Khan", "email": "amira@example.org", "role": "Teacher",
                   "active": "y", "groups": "teaching"})
    assert edited.status_code == 303, edited.get_data(as_text=True)

    with app.extensions["signoff"].db.read() as session:
        # Nothing above asked, changed or made a request for any of theirs.
        assert session.scalar(select(func.count()).select_from(Request)
                              .where(Request.staff_id.in_([other.anna, other.sam,
                                                           other.olive]))) == 2
        assert session.scalar(select(Staff.active).where(Staff.id == other.olive))
        assert [(p.name, p.role) for p in session.scalars(
            select(Staff).where(Staff.email == "amira@example.org").order_by(Staff.id))] == [
            ("Amira Khan", "Teacher"), ("Anna Otherton", "")]
        assert session.get(Policy, other.policy).state == "active"
        assert session.get(Closure, other.closure) is not None
