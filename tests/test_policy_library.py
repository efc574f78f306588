"""A setting's policy library, on both databases: several policies, each with its own audience and
schedule; groups changed mid-cycle; the database as the one place policies live after the first
`init` (a differing config gets a notice, `signoff policy export` gives them back as TOML); and the
console adding, editing, pausing a policy and adding a closure, each previewed before it is saved,
each acting at once without a restart."""

from __future__ import annotations

import csv
import io
import tomllib

import pytest
import time_machine
from sqlalchemy import select

from admin_helpers import (ADMIN, PASSWORD, admin, app, clock, console,  # noqa: F401
                           policy_fields, post, save_policy, sign_in, staff_id)
from conftest import at

LONE_WORKING = """
[[policy]]
slug = "lone-working"
title = "Lone Working Policy"
text = \"\"\"# Lone Working Policy

Tell the office before you work alone on site.
\"\"\"
statements = ["I tell the office before I work alone."]
audience = ["site"]

[policy.schedule]
annual_open = "09-08"
reminder_after_days = [3]
"""

GROUPED = """\
name,email,groups
Amira Khan,amira@example.org,teaching
Ben Lewis,ben@example.org,Site; first aid
Chloe Evans,chloe@example.org,
"""


def _tick(cli, config, when: str):
    result = cli("tick", "--at", at(when).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return result


def _sent(inbox, since: int) -> list[tuple[str, str]]:
    return sorted((m["To"].addresses[0].addr_spec, m["Subject"]) for m in inbox.messages[since:])


def _about(inbox, since: int) -> list[tuple[str, str]]:
    """(to, the text part) of each email since `since`: what it asks for, whatever its subject."""
    return sorted((m["To"].addresses[0].addr_spec, m.get_body(("plain",)).get_content())
                  for m in inbox.messages[since:])


def _report(cli, config, when: str) -> list[tuple[str, str, str]]:
    result = cli("report", "--format", "csv", "--at", at(when).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return sorted((r["email"], r["policy"], r["status"])
                  for r in csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture
def app_for():
    from workflow import config as config_mod
    from workflow.app import create_app

    made = []

    def make(path):
        made.append(create_app(config_mod.load(path)))
        made[-1].config["TESTING"] = False
        return made[-1]

    yield make
    for application in made:
        application.extensions["signoff"].db.dispose()


def test_each_policy_asks_its_own_audience_on_its_own_schedule(setup, cli, smtp):
    config = setup(GROUPED, extra=LONE_WORKING)
    plan = cli("plan", "--from", at("2026-09-07 12:00").isoformat(), "--to",
               at("2026-09-12 00:00").isoformat(), config=config).output
    lone = [line for line in plan.splitlines() if "[lone-working]" in line]
    assert [line[:38] for line in lone] == ["2026-09-07 Mon 12:00  first reminder  ",
                                             "2026-09-08 Tue 08:00  first reminder  ",
                                             "2026-09-11 Fri 08:00  follow-up 1     "]
    assert all("ben@example.org" in line for line in lone)
    _tick(cli, config, "2026-09-01 08:00")
    # The social media policy is for everyone; lone working for the site group only (Ben, whose
    # group is "Site"), and its 2025 cycle, open since last 8 September, is asked for at once:
    # in the same email as the social media policy.
    assert sorted((to, "Lone Working" in s) for to, s in _about(smtp.inbox, 0)) == [
        ("amira@example.org", False), ("ben@example.org", True), ("chloe@example.org", False)]
    # Lone working's 2026 cycle opens on its own day, Tue 8 Sep.
    before = len(smtp.inbox)
    _tick(cli, config, "2026-09-08 08:00")
    sent = _about(smtp.inbox, before)
    assert [to for to, _ in sent if "Lone Working" in _] == ["ben@example.org"]
    # Its own follow-ups: 3 days on, Fri 11 Sep; the social media policy's are 7 days on.
    before = len(smtp.inbox)
    _tick(cli, config, "2026-09-11 08:00")
    assert _sent(smtp.inbox, before) == [
        ("ben@example.org", "Reminder: please confirm the Lone Working Policy by 29 September")]
    assert _report(cli, config, "2026-09-11 12:00") == [
        ("amira@example.org", "social-media", "pending"),
        ("ben@example.org", "lone-working", "pending"),
        ("ben@example.org", "social-media", "pending"),
        ("chloe@example.org", "social-media", "pending")]
    plan = cli("plan", "--from", at("2026-09-11 12:00").isoformat(), "--to",
               at("2026-10-01 00:00").isoformat(), config=config).output
    assert "[lone-working]" not in plan  # its one follow-up has gone
    assert "2026-09-15 Tue 08:00  follow-up 2" in plan  # the social media policy's second


def _dropped(config) -> list[str]:
    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Request, Staff

    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return list(session.scalars(select(Staff.email).join(Request).where(
                Request.dropped_at.is_not(None))))
    finally:
        db.dispose()


def test_changing_groups_mid_cycle_asks_for_what_now_applies_and_stops_the_rest(
        setup, cli, smtp, app_for):
    config = setup(GROUPED, extra=LONE_WORKING)
    assert cli("admin", "add", ADMIN, "--password-stdin", config=config,
               input=PASSWORD + "\n").exit_code == 0
    _tick(cli, config, "2026-09-08 08:00")
    assert ("ben@example.org", "lone-working", "pending") in _report(cli, config, "2026-09-08 09:00")
    # Ben moves to teaching and Chloe joins the site team.
    path = config.parent / "moves.csv"
    path.write_text("name,email,groups\nBen Lewis,ben@example.org,teaching\n"
                    "Chloe Evans,chloe@example.org,site\n")
    assert cli("staff", "import", str(path), config=config).exit_code == 0
    # The import acts at once: Ben's Lone Working request no longer applies.
    assert _dropped(config) == ["ben@example.org"]
    before = len(smtp.inbox)
    result = _tick(cli, config, "2026-09-09 08:00")
    assert "no longer apply" not in result.output
    assert [(to, "Lone Working" in s) for to, s in _about(smtp.inbox, before)] == [
        ("chloe@example.org", True)]
    # No follow-up for Ben's; Chloe's comes 3 days after hers (Saturday 12th: on Monday).
    before = len(smtp.inbox)
    for day in ("2026-09-11 08:00", "2026-09-12 08:00", "2026-09-14 08:00"):
        _tick(cli, config, day)
    assert [to for to, s in _about(smtp.inbox, before) if "Lone Working" in s] == [
        "chloe@example.org"]
    rows = _report(cli, config, "2026-09-14 09:00")
    assert ("ben@example.org", "lone-working", "pending") not in rows
    assert ("chloe@example.org", "lone-working", "pending") in rows
    # The evidence keeps Ben's request, as no longer applying.
    web = app_for(config)
    client = web.test_client()
    with time_machine.travel(at("2026-09-14 10:00"), tick=False):
        assert sign_in(client).status_code == 303
        from workflow.models import Cycle, Policy

        with web.extensions["signoff"].db.read() as session:
            cycle = session.scalar(select(Cycle.id).join(Policy)
                                   .where(Policy.slug == "lone-working"))
        page = client.get(f"/admin/evidence/{cycle}").get_data(as_text=True)
        assert "Asked, then no longer in its audience" in page
        assert "Ben Lewis &lt;ben@example.org&gt; (no longer applies since" in page
        person = client.get(f"/admin/people/{staff_id(web, 'ben@example.org')}")
        assert "no longer applies" in person.get_data(as_text=True)
    # Back in the site group: asked again, on the next tick.
    path.write_text("name,email,groups\nBen Lewis,ben@example.org,teaching; site\n")
    assert cli("staff", "import", str(path), config=config).exit_code == 0
    before = len(smtp.inbox)
    _tick(cli, config, "2026-09-15 08:00")
    assert [to for to, s in _about(smtp.inbox, before) if "Lone Working" in s] == [
        "ben@example.org"]


def test_the_database_keeps_the_policies_after_the_first_init(setup, cli, tmp_path, db_url,
                                                                smtp):
    config = setup(GROUPED, extra=LONE_WORKING)
    text = config.read_text()
    config.write_text(text.replace('reminder_after_days = [3]', 'reminder_after_days = [4]'))
    again = cli("init", config=config)
    assert again.exit_code == 0
    assert "differ from the ones stored in the database" in again.output
    assert "policies in use: social-media, lone-working" in again.output
    exported = cli("policy", "export", config=config)
    assert exported.exit_code == 0, exported.output
    tables = tomllib.loads(exported.output)
    lone = tables["policy"][1]
    assert lone["schedule"] == {"annual_open": "09-08", "reminder_after_days": [3]}
    assert lone["audience"] == ["site"] and lone["text"].startswith("# Lone Working Policy")
    assert tables["schedule"]["annual_open"] == "09-01"
    # The export is a config's tables: another setting's first init takes them in as they are.
    from conftest import write_config

    other = write_config(tmp_path / "other", f"sqlite:///{tmp_path / 'other' / 'signoff.db'}",
                         smtp.port)
    head = other.read_text()
    other.write_text(head[:head.index("[schedule]")] + exported.output)
    assert cli("init", config=other).exit_code == 0
    again = cli("policy", "export", config=other)
    assert tomllib.loads(again.output) == tables and "closure" not in tables
    assert "differ" not in cli("init", config=other).output


def test_the_console_adds_a_policy_previewed_first_and_the_tick_uses_it_at_once(admin, app, cli,
                                                                                console, smtp):
    fields = {"title": "Staff Code of Conduct", "text": "# Staff Code of Conduct\n\nBe kind.\n",
              "statements": "I have read the code of conduct.\nI will follow it.",
              "reminder_note": "", "audience": "", "annual_open": "", "send_time": "",
              "reminder_after_days": "5", "escalate_after_days": "", "working_days_only": ""}
    preview, saved = save_policy(admin, "/admin/policies/new", fields)
    page = preview.get_data(as_text=True)
    # The cycle has been open since 1 September: everyone is asked at the next run.
    assert "Saving this sends 3 first reminders on Wed 2 Sep 2026 at 10:00" in page
    assert "It is for everyone: 3 active people on the roster." in page
    assert "one email a day" not in page  # it sends when the others do
    assert saved.status_code == 303
    assert ("Saved the Staff Code of Conduct. This sends 3 first reminders on Wed 2 Sep 2026 at "
            "10:00") in admin.get(saved.headers["Location"]).get_data(as_text=True)
    later = post(admin, "/admin/policies/new", {**fields, "send_time": "10:00",
                                                "action": "preview"}).get_data(as_text=True)
    assert ("It sends at 10:00, other policies at 08:00: what it sends to someone on a day they "
            "have already had an email waits until their next day&#39;s, one email a day.") in later
    listed = admin.get("/admin/policies").get_data(as_text=True)
    assert "Staff Code of Conduct" in listed and "active" in listed
    before = len(smtp.inbox)
    _tick(cli, console, "2026-09-02 10:05")  # the same web process; the tick reads what is stored
    assert sorted(to for to, s in _about(smtp.inbox, before) if "Code of Conduct" in s) == [
        "amira@example.org", "ben@example.org", "chloe@example.org"]
    with app.extensions["signoff"].db.read() as session:
        from workflow.models import Event

        added = session.scalars(select(Event).where(Event.kind == "policy_added")).one()
        assert added.actor == ADMIN and added.detail["schedule"] == {"reminder_after_days": [5]}
    # A save that was not previewed as it stands is shown again as a preview, not saved.
    policy_id = int(saved.headers["Location"].rsplit("/", 1)[1])
    changed = {**policy_fields(admin, policy_id), "reminder_after_days": "6"}
    again = post(admin, f"/admin/policies/{policy_id}", {**changed, "action": "save",
                                                         "previewed": "0" * 64})
    assert again.status_code == 200 and "Check what saving this does" in again.get_data(
        as_text=True)
    assert "Saving this sends 3 follow-ups (number 1) on Tue 8 Sep 2026 at 08:00" in \
        again.get_data(as_text=True)


def test_pausing_a_policy_stops_its_sends_and_resuming_starts_them(admin, app, cli, console,
                                                                   smtp):
    from workflow.models import Policy

    with app.extensions["signoff"].db.read() as session:
        policy_id = session.scalar(select(Policy.id).filter_by(slug="social-media"))
    assert post(admin, f"/admin/policies/{policy_id}/state",
                {"state": "paused"}).status_code == 303
    before = len(smtp.inbox)
    _tick(cli, console, "2026-09-08 08:00")  # the first follow-ups' day
    assert len(smtp.inbox) == before
    assert "paused" in admin.get("/admin/policies").get_data(as_text=True)
    assert post(admin, f"/admin/policies/{policy_id}/state",
                {"state": "active"}).status_code == 303
    _tick(cli, console, "2026-09-08 08:30")
    assert len(smtp.inbox) == before + 3


def test_a_closure_added_in_the_console_moves_the_coming_sends(admin, cli, console):
    fields = {"name": "Staff training", "first": "2026-09-08", "last": "2026-09-08"}
    preview = post(admin, "/admin/closures", {**fields, "action": "preview"})
    page = preview.get_data(as_text=True)
    assert "Saving this sends 3 follow-ups (number 1) on Wed 9 Sep 2026 at 08:00" in page
    assert "3 follow-ups (number 1) on Tue 8 Sep 2026 at 08:00" in page  # no longer sent
    from admin_helpers import previewed

    saved = post(admin, "/admin/closures", {**fields, "action": "save",
                                            "previewed": previewed(preview)})
    assert saved.status_code == 303
    plan = cli("plan", "--from", at("2026-09-02 12:00").isoformat(), "--to",
               at("2026-09-10 00:00").isoformat(), config=console).output
    # Closed days do not count: 7 open days after 1 September is Wednesday 9 September.
    assert "2026-09-09 Wed 08:00  follow-up 1" in plan and "not counting Staff training" in plan
    listed = admin.get("/admin/closures").get_data(as_text=True)
    assert "Staff training: Tue 8 Sep 2026" in listed


def test_the_upgrade_moves_each_persons_groups_into_rows(tmp_path):
    import sqlalchemy as sa
    from alembic import command

    from workflow.db import Database, _alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = _alembic_config()
    cfg.attributes["url"] = url
    command.upgrade(cfg, "0007")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO setting (id, name, timezone) VALUES (1, 'N', "
                             "'Europe/London')"))
        conn.execute(sa.text(
            "INSERT INTO staff (setting_id, email, name, first_name, role, active, groups, "
            "created_at, updated_at) VALUES (1, 'a@example.org', 'A', 'A', '', 1, "
            "'[\"teaching\", \"first aid\"]', '2026-01-01', '2026-01-01')"))
    engine.dispose()
    upgrade(url)
    db = Database(url)
    try:
        from workflow.models import Staff

        with db.read() as session:
            assert session.scalars(select(Staff)).one().groups == ("teaching", "first aid")
    finally:
        db.dispose()
