"""The dashboard, the evidence page, `signoff report` and the head teacher's digest tell one story:
the same people in the same status, counted the same way. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

import time_machine

from admin_helpers import ADMIN, PASSWORD, post, sign_in, staff_id
from conftest import at, link_in
from helpers import confirm_by_page, parts
from workflow import config as config_mod
from workflow.app import create_app

# Gina starts after the cycle opened: asked, her first reminder still to come.
ROSTER = """\
name,email,start_date
Amira Khan,amira@example.org,
Ben Lewis,ben@example.org,
Chloe Evans,chloe@example.org,
Dan Okafor,dan@example.org,
Erin Walsh,erin@example.org,
Frank Hill,frank@example.org,
Gina Moss,gina@example.org,2026-10-05
"""
# On 22 Sep 2026, 21 days after the first reminders: Amira confirmed, Ben is exempt, Chloe has
# until 15 Oct, Dan is overdue, Gina has not started; Erin confirmed and left, Frank left without.
STORY = {"confirmed": 1, "exempt": 1, "overdue": 1, "pending": 2}
EXPECTED = 4  # confirmed + pending + overdue: "confirmed 1 of 4"


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def _story(setup, cli, smtp, tmp_path):
    config = setup(roster=ROSTER)
    _ok(cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n"))
    _ok(cli("tick", "--at", "2026-09-01T09:00+01:00", config=config))
    for who in ("amira", "erin"):
        confirm_by_page(config, link_in(smtp.inbox.to(f"{who}@example.org")[0]),
                        at("2026-09-02 10:00"))
    app = create_app(config_mod.load(config))
    app.config["TESTING"] = False
    with time_machine.travel(at("2026-09-03 10:00"), tick=False):
        client = app.test_client()
        assert sign_in(client).status_code == 303
        ben, chloe = staff_id(app, "ben@example.org"), staff_id(app, "chloe@example.org")
        done = post(client, f"/admin/people/{ben}/social-media/exempt",
                    {"reason": "Long-term sick leave"}, prefix="social-media-exempt")
        assert done.status_code == 303
        done = post(client, f"/admin/people/{chloe}/social-media/extend", {"due": "2026-10-15"},
                    prefix="social-media-extend")
        assert done.status_code == 303
    (tmp_path / "leavers.csv").write_text("name,email,active\nErin Walsh,erin@example.org,no\n"
                                          "Frank Hill,frank@example.org,no\n")
    _ok(cli("staff", "import", str(tmp_path / "leavers.csv"), config=config))
    _ok(cli("tick", "--at", "2026-09-22T09:00+01:00", config=config))
    return config, app


def _console(app) -> tuple[str, str, str]:
    """The dashboard, the people list and the current cycle's evidence page, as an admin sees
    them on 22 Sep."""
    with time_machine.travel(at("2026-09-22 10:00"), tick=False):
        client = app.test_client()
        assert sign_in(client).status_code == 303
        dashboard = client.get("/admin/").get_data(as_text=True)
        people = client.get("/admin/people").get_data(as_text=True)
        cycle = re.search(r'href="/admin/evidence/(\d+)"', dashboard).group(1)
        evidence = client.get(f"/admin/evidence/{cycle}").get_data(as_text=True)
    return dashboard, people, evidence


def test_every_surface_counts_the_same_people_the_same_way(setup, cli, smtp, tmp_path):
    config, app = _story(setup, cli, smtp, tmp_path)
    try:
        dashboard, people, evidence = _console(app)
    finally:
        app.extensions["signoff"].db.dispose()

    shown = {status.lower(): int(n) for status, n in re.findall(
        r'<div class="count status-\w+"><dt>(\w+)</dt><dd>(\d+)</dd></div>', dashboard)}
    assert shown == STORY
    assert f"Confirmed {STORY['confirmed']} of {EXPECTED}" in dashboard

    # The people list: everyone, the leavers with what they did or `inactive`.
    statuses = dict(re.findall(r'>([A-Z][a-z]+ [A-Z][a-z]+)</a>.*?class="status status-(\w+)"',
                               people, re.S))
    assert statuses == {"Amira Khan": "confirmed", "Ben Lewis": "exempt",
                        "Chloe Evans": "pending", "Dan Okafor": "overdue",
                        "Erin Walsh": "confirmed", "Frank Hill": "inactive",
                        "Gina Moss": "pending"}

    # The evidence page lists the leavers' records but counts what the dashboard counts.
    lead = " ".join(re.search(r'<p class="lead" id="evidence-counts">(.*?)</p>', evidence,
                              re.S).group(1).split())
    assert (f"{STORY['confirmed']} confirmed, {STORY['exempt']} exempt, "
            f"{STORY['overdue'] + STORY['pending']} not confirmed ({STORY['overdue']} overdue).") \
        in lead
    assert "Not counted: 2 people asked this cycle who have since left" in lead
    assert "Erin Walsh (no longer active)" in evidence
    assert "Frank Hill &lt;frank@example.org&gt; (no longer active)" in evidence
    assert "Dan Okafor &lt;dan@example.org&gt; (overdue)" in evidence

    # The report: active people only, overdue ones `pending` as the contract says.
    report = cli("report", "--format", "csv", "--at", "2026-09-22T10:00+01:00", config=config)
    _ok(report)
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert Counter(r["status"] for r in rows) == {
        "confirmed": STORY["confirmed"], "exempt": STORY["exempt"],
        "pending": STORY["overdue"] + STORY["pending"]}
    assert {r["email"] for r in rows if r["status"] == "pending"} == {
        "chloe@example.org", "dan@example.org", "gina@example.org"}
    text = cli("report", "--format", "text", "--at", "2026-09-22T10:00+01:00", config=config)
    _ok(text)
    assert (f"social-media: confirmed {STORY['confirmed']} of {EXPECTED} "
            f"({STORY['exempt']} exempt)") in text.stdout

    # The digest the 22 Sep tick sent: the same overdue people and the same summary.
    digest, = smtp.inbox.to("head@example.org")
    body, _ = parts(digest)
    assert (f"Use of Social Media Policy: confirmed {STORY['confirmed']} of {EXPECTED} "
            f"({STORY['exempt']} exempt).") in body
    overdue = [line for line in body.splitlines() if "days outstanding" in line]
    assert len(overdue) == STORY["overdue"]
    assert overdue[0].startswith("- Dan Okafor <dan@example.org>")


def test_overdue_from_the_moment_the_request_says_on_every_surface(setup, cli, smtp, tmp_path):
    """Nobody confirms: everyone is overdue from 08:00 on 22 Sep (21 days on, at the send time). A
    second before, the dashboard shows them pending and no digest goes; at 08:00, overdue, and the
    digest names all three."""
    config = setup()
    _ok(cli("tick", "--at", "2026-09-01T09:00+01:00", config=config))
    _ok(cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n"))
    app = create_app(config_mod.load(config))
    app.config["TESTING"] = False
    try:
        for when, overdue in (("2026-09-22 07:59:59", 0), ("2026-09-22 08:00", 3)):
            with time_machine.travel(at(when), tick=False):
                client = app.test_client()
                assert sign_in(client).status_code == 303
                page = client.get("/admin/").get_data(as_text=True)
            assert f'<dt>Overdue</dt><dd>{overdue}</dd>' in page
            assert f'<dt>Pending</dt><dd>{3 - overdue}</dd>' in page
    finally:
        app.extensions["signoff"].db.dispose()
    _ok(cli("tick", "--at", "2026-09-22T07:59:59+01:00", config=config))
    assert smtp.inbox.to("head@example.org") == []
    _ok(cli("tick", "--at", "2026-09-22T08:00+01:00", config=config))
    digest, = smtp.inbox.to("head@example.org")
    assert sum("days outstanding" in line for line in parts(digest)[0].splitlines()) == 3
