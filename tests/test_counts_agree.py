"""The dashboard, the evidence page, `signoff report` and the head teacher's digest tell one story:
the same people in the same status, counted the same way, with the same reminders sent and the
same delivery problems; and the date a reminder asks for is the last day anyone is not overdue,
on every surface. SQLite and PostgreSQL."""

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
Hana Ito,hana@example.org,
"""
# On 23 Sep 2026, the day after the date the first reminders asked for (22 Sep): Amira confirmed,
# Ben is exempt, Chloe has until 15 Oct, Dan is overdue, Gina has not started, Hana is overdue and
# no email has ever reached her; Erin confirmed and left, Frank left without confirming.
STORY = {"confirmed": 1, "exempt": 1, "overdue": 2, "pending": 2}
EXPECTED = 5  # confirmed + pending + overdue: "confirmed 1 of 5"
BOUNCE = "550 5.1.1 No such user"


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def _failed(result) -> None:
    """A tick that ran but could not deliver everything (Hana's address bounces): exit 1."""
    assert result.exit_code == 1, result.output


def _story(setup, cli, smtp, tmp_path):
    config = setup(roster=ROSTER)
    _ok(cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n"))
    smtp.inbox.refuse["hana@example.org"] = BOUNCE
    _failed(cli("tick", "--at", "2026-09-01T09:00+01:00", config=config))
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
    # The scheduler was off after the opening: this tick sends the latest follow-up due (the
    # second) to those still asked, and the first digest.
    _failed(cli("tick", "--at", "2026-09-23T09:00+01:00", config=config))
    return config, app


def _console(app) -> tuple[str, str, str, str]:
    """The dashboard, the people list (all, and overdue only: the digest's link) and the current
    cycle's evidence page, as an admin sees them on 23 Sep."""
    with time_machine.travel(at("2026-09-23 10:00"), tick=False):
        client = app.test_client()
        assert sign_in(client).status_code == 303
        dashboard = client.get("/admin/").get_data(as_text=True)
        people = client.get("/admin/people").get_data(as_text=True)
        overdue = client.get("/admin/people?status=overdue").get_data(as_text=True)
        cycle = re.search(r'href="/admin/evidence/(\d+)"', dashboard).group(1)
        evidence = client.get(f"/admin/evidence/{cycle}").get_data(as_text=True)
    return dashboard, people, overdue, evidence


def test_every_surface_counts_the_same_people_the_same_way(setup, cli, smtp, tmp_path):
    config, app = _story(setup, cli, smtp, tmp_path)
    try:
        dashboard, people, overdue_people, evidence = _console(app)
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
                        "Gina Moss": "pending", "Hana Ito": "overdue"}

    # The evidence page lists the leavers' records but counts what the dashboard counts.
    lead = " ".join(re.search(r'<p class="lead" id="evidence-counts">(.*?)</p>', evidence,
                              re.S).group(1).split())
    assert (f"{STORY['confirmed']} confirmed, {STORY['exempt']} exempt, "
            f"{STORY['overdue'] + STORY['pending']} not confirmed ({STORY['overdue']} overdue).") \
        in lead
    assert "Not counted: 2 people asked this cycle who have since left" in lead
    assert "Erin Walsh (no longer active)" in evidence
    # "Not confirmed" lists the people its count counts; Frank, who left, is listed apart.
    not_confirmed = evidence[evidence.index("<h2>Not confirmed</h2>"):]
    not_confirmed = not_confirmed[:not_confirmed.index("</ul>")]
    assert re.findall(r"<li>([^&]+) &lt;", not_confirmed) == [
        "Chloe Evans", "Dan Okafor", "Gina Moss", "Hana Ito"]
    assert len(re.findall(r"<li>", not_confirmed)) == STORY["overdue"] + STORY["pending"]
    assert "Dan Okafor &lt;dan@example.org&gt; (overdue)" in not_confirmed
    gone = evidence[evidence.index("<h2>Asked, then left without confirming</h2>"):]
    assert "Frank Hill &lt;frank@example.org&gt; (no longer active)" in gone

    # The report: active people only, overdue ones `pending` as the contract says.
    report = cli("report", "--format", "csv", "--at", "2026-09-23T10:00+01:00", config=config)
    _ok(report)
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert Counter(r["status"] for r in rows) == {
        "confirmed": STORY["confirmed"], "exempt": STORY["exempt"],
        "pending": STORY["overdue"] + STORY["pending"]}
    assert {r["email"] for r in rows if r["status"] == "pending"} == {
        "chloe@example.org", "dan@example.org", "gina@example.org", "hana@example.org"}
    text = cli("report", "--format", "text", "--at", "2026-09-23T10:00+01:00", config=config)
    _ok(text)
    assert (f"social-media: confirmed {STORY['confirmed']} of {EXPECTED} "
            f"({STORY['exempt']} exempt)") in text.stdout

    # The digest the 23 Sep tick sent: the same overdue people, the same summary, and each one's
    # reminders sent and delivery problem as the report has them.
    digest, = smtp.inbox.to("head@example.org")
    body, html = parts(digest)
    assert (f"Use of Social Media Policy: confirmed {STORY['confirmed']} of {EXPECTED} "
            f"({STORY['exempt']} exempt).") in body
    named = dict(re.findall(r"^- [^<]+<([^>]+)>.*?: asked to confirm by .*?, (\d+ reminders? "
                            r"sent(?:; DELIVERY PROBLEM: .*)?)$", body, re.M))
    assert sorted(named) == ["dan@example.org", "hana@example.org"]
    assert len(named) == STORY["overdue"] == shown["overdue"]
    by_email = {r["email"]: r for r in rows}
    for email, said in named.items():
        row = by_email[email]
        count = int(row["reminders_sent"])
        expected = f"{count} reminder{'' if count == 1 else 's'} sent"
        if row["delivery"] != "ok":
            expected += f"; DELIVERY PROBLEM: {row['delivery']}"
        assert said == expected, (email, said, row)
    assert named["dan@example.org"] == "2 reminders sent"
    assert named["hana@example.org"] == f"0 reminders sent; DELIVERY PROBLEM: failed: {BOUNCE}"
    # Its link leads to the console's people page, showing the same overdue people.
    assert "http://signoff.test/admin/people?status=overdue" in body
    assert 'href="http://signoff.test/admin/people?status=overdue"' in html
    assert "Dan Okafor" in overdue_people and "Hana Ito" in overdue_people
    for other in ("Amira Khan", "Ben Lewis", "Chloe Evans", "Gina Moss", "Frank Hill"):
        assert other not in overdue_people


def _dashboard_overdue(app, when: str) -> int:
    with time_machine.travel(at(when), tick=False):
        client = app.test_client()
        assert sign_in(client).status_code == 303
        page = client.get("/admin/").get_data(as_text=True)
    return int(re.search(r"<dt>Overdue</dt><dd>(\d+)</dd>", page).group(1))


def test_nobody_is_overdue_on_the_date_their_reminder_asked_for(setup, cli, smtp, tmp_path):
    """Nobody confirms. The reminders of 1 Sep ask for Tuesday 22 Sep: all that day, to its last
    second, the dashboard shows everyone pending, `plan` has the digest on the 23rd and a tick
    sends none; from midnight they are overdue, and the 08:00 digest names all three, one day
    past the date they were given."""
    config = setup()
    _ok(cli("tick", "--at", "2026-09-01T09:00+01:00", config=config))
    reminder = smtp.inbox.to("amira@example.org")[0]
    assert "Please, by Tuesday 22 September 2026" in parts(reminder)[0]
    _ok(cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n"))
    app = create_app(config_mod.load(config))
    app.config["TESTING"] = False
    try:
        for when, overdue in (("2026-09-22 08:00", 0), ("2026-09-22 23:59:59", 0),
                              ("2026-09-23 00:00", 3), ("2026-09-23 07:59", 3)):
            with time_machine.travel(at(when), tick=False):
                client = app.test_client()
                assert sign_in(client).status_code == 303
                page = client.get("/admin/").get_data(as_text=True)
            assert f'<dt>Overdue</dt><dd>{overdue}</dd>' in page, when
            assert f'<dt>Pending</dt><dd>{3 - overdue}</dd>' in page, when
    finally:
        app.extensions["signoff"].db.dispose()
    plan = cli("plan", "--from", "2026-09-22T00:00", "--to", "2026-09-24", config=config)
    _ok(plan)
    digests = [line for line in plan.output.splitlines() if "head-teacher digest" in line]
    assert digests == [line for line in digests if line.startswith("2026-09-23 Wed 08:00")]
    assert len(digests) == 1 and "3 overdue by then" in digests[0]
    for when in ("2026-09-22 08:00", "2026-09-22 23:59:59"):
        _ok(cli("tick", "--at", at(when).isoformat(), config=config))
        assert smtp.inbox.to("head@example.org") == []
    _ok(cli("tick", "--at", "2026-09-23T08:00+01:00", config=config))
    digest, = smtp.inbox.to("head@example.org")
    named = [line for line in parts(digest)[0].splitlines()
             if "asked to confirm by Tuesday 22 September 2026, 1 day past" in line]
    assert len(named) == 3


def test_an_extended_date_is_the_last_day_before_overdue(setup, cli, smtp):
    """An admin gives Ben until Friday 2 October: he is not overdue that day, and is the next."""
    config = setup()
    _ok(cli("tick", "--at", "2026-09-01T09:00+01:00", config=config))
    _ok(cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n"))
    app = create_app(config_mod.load(config))
    app.config["TESTING"] = False
    try:
        with time_machine.travel(at("2026-09-03 10:00"), tick=False):
            client = app.test_client()
            assert sign_in(client).status_code == 303
            ben = staff_id(app, "ben@example.org")
            done = post(client, f"/admin/people/{ben}/social-media/extend", {"due": "2026-10-02"},
                        prefix="social-media-extend")
            assert done.status_code == 303
        _ok(cli("tick", "--at", "2026-09-23T08:00+01:00", config=config))
        first = parts(smtp.inbox.to("head@example.org")[0])[0]
        assert "ben@example.org" not in first and first.count("1 day past") == 2
        assert _dashboard_overdue(app, "2026-10-02 23:59:59") == 2
        assert _dashboard_overdue(app, "2026-10-03 00:00") == 3
    finally:
        app.extensions["signoff"].db.dispose()
    _ok(cli("tick", "--at", "2026-10-07T08:00+01:00", config=config))
    second = parts(smtp.inbox.to("head@example.org")[1])[0]
    ben_line, = [line for line in second.splitlines() if "ben@example.org" in line]
    assert "asked to confirm by Friday 2 October 2026, 5 days past" in ben_line


def test_the_dashboards_next_send_planned_from_the_states_it_counted_is_the_timelines_first(
        setup, cli, smtp, tmp_path):
    """The dashboard counts everyone and reads those still to confirm by state in one pass; its
    next send, planned from those states, is the first of the timeline that reads them itself,
    whatever the story's people are doing (confirmed, exempt, extended, not started, left)."""
    import datetime as dt

    from workflow import standing, timeline

    config, app = _story(setup, cli, smtp, tmp_path)
    svc = app.extensions["signoff"]
    try:
        for when in ("2026-09-23 10:00", "2026-09-29 09:00", "2026-10-04 12:00",
                     "2026-10-16 07:00"):
            moment, end = at(when), at(when) + dt.timedelta(days=366)
            with app.app_context(), svc.db.read() as session:
                lib = svc.library(session)
                counts, states = standing.tallies_and_states(lib, session, moment)
                assert counts == standing.tallies(lib, session, moment)
                given = timeline.batches(svc, session, moment, end, lib, first=True,
                                         states=states)
                read = timeline.batches(svc, session, moment, end, lib)
            assert given and given == [b for b in read if b.when == read[0].when], when
    finally:
        svc.db.dispose()
