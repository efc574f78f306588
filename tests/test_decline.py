""""I can't confirm this", on both databases: a person who cannot honestly confirm says which part
and why on their page; the chasing stops, the head teacher hears at once in one email of its
own, the report, dashboard, person page and evidence show it, and the head teacher or the
office records how it was resolved (asked again, or excused). The person can still confirm from
the same link, and the decline stays in the evidence."""

from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from admin_helpers import admin, app, clock, console, post, staff_id  # noqa: F401
from conftest import at, hidden_fields, link_in
from helpers import confirm_by_page, decline_by_page, flat, parts

REASON = "My sister's child is at the nursery and she is my friend on Facebook."


def _tick(cli, config, when: str):
    result = cli("tick", "--at", at(when).isoformat(), config=config)
    assert result.exit_code in (0, 1), result.output
    return result


def _report(cli, config, when: str) -> dict[str, dict[str, str]]:
    result = cli("report", "--format", "csv", "--at", at(when).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return {row["email"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def _rows(config, model) -> list:
    from workflow import config as config_mod
    from workflow.db import Database

    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return list(session.scalars(select(model).order_by(model.id)))
    finally:
        db.dispose()


def test_someone_who_cannot_confirm_says_why_and_the_head_teacher_hears_at_once(setup, cli,
                                                                               smtp):
    from workflow.models import Decline, Event

    config = setup()
    _tick(cli, config, "2026-09-01 08:00")
    link = link_in(smtp.inbox.to("amira@example.org")[0])
    status, page = decline_by_page(config, link, at("2026-09-02 19:30"), REASON, statement="1")
    assert status == 303
    # Their page says what happens now, and still lets them confirm.
    assert "You told us you cannot confirm this" in page
    assert "The head teacher has been told" in flat(page)
    assert 'name="s0"' in page and "I can’t confirm this" not in page
    [decline] = _rows(config, Decline)
    assert decline.reason == REASON and decline.resolved_at is None
    assert decline.statement == "No child or parent is my online friend or follower."
    assert "declined" in [e.kind for e in _rows(config, Event)]
    row = _report(cli, config, "2026-09-02 20:00")["amira@example.org"]
    assert row["status"] == "declined"
    assert row["decline_reason"] == REASON and row["decline_outcome"] == ""
    assert row["decline_statement"] == decline.statement

    # The next run tells the head teacher, in one email of its own, and nobody else hears.
    before = len(smtp.inbox)
    _tick(cli, config, "2026-09-02 20:05")
    [email] = smtp.inbox.messages[before:]
    assert email["To"].addresses[0].addr_spec == "head@example.org"
    assert email["Subject"] == "Amira Khan cannot confirm the Use of Social Media Policy"
    text, html = parts(email)
    for body in (text, flat(html)):
        assert REASON in body.replace("&#39;", "'")
        assert "No child or parent is my online friend or follower." in body
    person = re.search(r"http://signoff.test/admin/people/\d+", text).group(0)
    assert f'href="{person}"' in html
    # Saying it twice (a second tab, a double press) changes nothing and tells nobody again.
    status, _ = decline_by_page(config, link, at("2026-09-02 20:10"), "again")
    assert status == 303 and len(_rows(config, Decline)) == 1
    _tick(cli, config, "2026-09-02 20:15")
    assert len(smtp.inbox) == before + 1

    # Nobody chases her about it: the follow-ups go to the others only, and the digest, when
    # the others are overdue, does not name her.
    before = len(smtp.inbox)
    _tick(cli, config, "2026-09-08 08:00")
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages[before:]) == [
        "ben@example.org", "chloe@example.org"]
    _tick(cli, config, "2026-09-23 08:00")
    [digest] = smtp.inbox.to("head@example.org")[1:]
    assert "amira@example.org" not in parts(digest)[0]
    assert "Ben Lewis" in parts(digest)[0]


def test_what_they_must_fix_is_shown_and_nothing_is_recorded(setup, cli, smtp):
    from workflow import config as config_mod
    from workflow.app import create_app
    from workflow.models import Decline
    from urllib.parse import urlsplit

    config = setup()
    _tick(cli, config, "2026-09-01 08:00")
    link = link_in(smtp.inbox.to("amira@example.org")[0])
    status, page = decline_by_page(config, link, at("2026-09-02 10:00"), "   ")
    assert status == 400
    assert "Please say why, so that the head teacher can help." in page
    assert 'aria-invalid="true"' in page and "<details class=\"decline\" open>" in page
    status, page = decline_by_page(config, link, at("2026-09-02 10:00"), "x" * 2001)
    assert status == 400 and "Please keep it to 2000 characters." in page
    status, page = decline_by_page(config, link, at("2026-09-02 10:00"), REASON, statement="7")
    assert status == 400 and "The policy was updated while you were reading it" in page
    web = create_app(config_mod.load(config))
    try:
        client = web.test_client()
        path = urlsplit(link).path
        form = {**hidden_fields(client.get(path).get_data(as_text=True)), "reason": REASON,
                "statement": "", "action": "decline"}
        form.pop("csrf_token")
        answer = client.post(path, data=form)
        assert answer.status_code == 400
        assert "The form had expired" in answer.get_data(as_text=True)
        # Looking never declines: a mail scanner's GET and HEAD change nothing.
        assert client.get(path, query_string={"action": "decline"}).status_code == 200
        assert client.head(path).status_code == 200
    finally:
        web.extensions["signoff"].db.dispose()
    assert _rows(config, Decline) == []
    assert _report(cli, config, "2026-09-02 11:00")["amira@example.org"]["status"] == "pending"


def test_someone_who_declined_can_still_confirm_from_the_same_link(setup, cli, smtp):
    """They confirm before the head teacher's email has gone: the email has nothing left to ask,
    so it does not go; the decline stays in the evidence, resolved by their confirmation."""
    from workflow.models import Decline, Outbox

    config = setup()
    _tick(cli, config, "2026-09-01 08:00")
    link = link_in(smtp.inbox.to("amira@example.org")[0])
    assert decline_by_page(config, link, at("2026-09-02 10:00"), REASON)[0] == 303
    thanks = flat(confirm_by_page(config, link, at("2026-09-02 10:01")))
    assert "You confirmed the Use of Social Media Policy on" in thanks
    [decline] = _rows(config, Decline)
    assert decline.outcome == "confirmed" and decline.resolved_at is not None
    before = len(smtp.inbox)
    _tick(cli, config, "2026-09-02 10:05")
    assert len(smtp.inbox) == before
    assert [r.status for r in _rows(config, Outbox) if r.kind == "declined"] == ["cancelled"]
    row = _report(cli, config, "2026-09-02 11:00")["amira@example.org"]
    assert row["status"] == "confirmed" and row["confirmed_at"]
    assert row["decline_reason"] == REASON and row["decline_outcome"] == "confirmed"


def test_the_console_shows_a_decline_and_the_head_teacher_resolves_it(admin, app, cli, console,
                                                                      smtp):
    """Amira cannot confirm; the dashboard and her page say so; asked again, her reminders start
    again. Ben cannot either; excused, he is exempt, with the decline and the decision as the
    reason. Each decision is an event naming who made it; a decision needs a note."""
    from workflow.models import Event

    for who in ("amira", "ben"):
        link = link_in(smtp.inbox.to(f"{who}@example.org")[0])
        assert decline_by_page(console, link, at("2026-09-02 09:00"), REASON)[0] == 303
    dashboard = flat(admin.get("/admin/").get_data(as_text=True))
    assert "Cannot confirm: waiting for a decision" in dashboard
    assert "2 people say they cannot confirm a policy" in dashboard
    assert "Declined 2" in dashboard
    listed = admin.get("/admin/people?status=declined").get_data(as_text=True)
    assert "Amira Khan" in listed and "Ben Lewis" in listed and "Chloe Evans" not in listed
    evidence_link = re.search(r'href="(/admin/evidence/\d+)"',
                              admin.get("/admin/").get_data(as_text=True)).group(1)
    evidence = flat(admin.get(evidence_link).get_data(as_text=True))
    assert "Cannot confirm: waiting for a decision" in evidence
    assert "3 not confirmed (2 cannot confirm)" in evidence

    amira = staff_id(app, "amira@example.org")
    page = flat(admin.get(f"/admin/people/{amira}").get_data(as_text=True))
    assert "Says they cannot confirm: waiting for a decision" in page
    assert "Record the decision" in page and "Resend their link" not in page
    # A decision needs a note, and changes nothing without one.
    answer = post(admin, f"/admin/people/{amira}/social-media/resolve",
                  {"outcome": "reopened", "note": ""}, prefix="social-media-resolve")
    assert answer.status_code == 400
    assert "Say what was decided" in answer.get_data(as_text=True)
    # The office cannot resend or exempt around an open decline either.
    refused = post(admin, f"/admin/people/{amira}/social-media/resend")
    assert refused.status_code == 409 and "Record what happens now" in flat(
        refused.get_data(as_text=True))
    done = post(admin, f"/admin/people/{amira}/social-media/resolve",
                {"outcome": "reopened", "note": "Spoke to Amira: her sister is not a parent here."},
                prefix="social-media-resolve")
    assert done.status_code == 303
    assert "asked to confirm the Use of Social Media Policy again" in flat(
        admin.get(done.headers["Location"]).get_data(as_text=True))
    ben = staff_id(app, "ben@example.org")
    done = post(admin, f"/admin/people/{ben}/social-media/resolve",
                {"outcome": "excused", "note": "Agreed with the chair of governors."},
                prefix="social-media-resolve")
    assert done.status_code == 303
    again = post(admin, f"/admin/people/{ben}/social-media/resolve",
                 {"outcome": "reopened", "note": "Twice"}, prefix="social-media-resolve")
    assert again.status_code == 409 and "no decline" in again.get_data(as_text=True)

    report = _report(cli, console, "2026-09-02 11:00")
    assert report["amira@example.org"]["status"] == "pending"
    assert report["amira@example.org"]["decline_outcome"] == "reopened"
    assert report["ben@example.org"]["status"] == "exempt"
    assert report["ben@example.org"]["exempt_reason"] == (
        f"Could not confirm: {REASON} — Agreed with the chair of governors.")
    with app.extensions["signoff"].db.read() as session:
        resolved = session.scalars(select(Event).where(Event.kind == "decline_resolved")
                                   .order_by(Event.id)).all()
    assert [(e.actor, e.detail["outcome"]) for e in resolved] == [
        ("office@example.org", "reopened"), ("office@example.org", "excused")]
    page = flat(admin.get(f"/admin/people/{amira}").get_data(as_text=True))
    assert "Said they could not confirm" in page and "asked to confirm again, by office@" in page

    # Asked again: the next run sends her what is due (the first follow-up, on its day); Ben,
    # excused, hears nothing more.
    before = len(smtp.inbox)
    _tick(cli, console, "2026-09-08 08:00")
    sent_to = sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages[before:])
    assert sent_to == ["amira@example.org", "chloe@example.org"]
