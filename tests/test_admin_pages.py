"""Dashboard, schedule (with its test email) and evidence pages, and that looking at any admin page
changes nothing."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re

from sqlalchemy import func, select

from admin_helpers import ADMIN, admin, app, clock, console, post, sign_in, staff_id  # noqa: F401
from conftest import free_port, hidden_fields, link_in
from workflow import models
from workflow.models import Cycle, Event


def _confirm(app, smtp, email):
    """The person confirms through their own page, as in a browser."""
    client = app.test_client()
    url = link_in(smtp.inbox.to(email)[0])[len("http://signoff.test"):]
    page = client.get(url).get_data(as_text=True)
    hidden = hidden_fields(page)
    token, version = hidden["csrf_token"], hidden["version"]
    response = client.post(url, data={"csrf_token": token, "version": version, "s0": "y", "s1": "y"},
                           headers={"User-Agent": "PhoneBrowser/1.0"})
    assert response.status_code == 303


def test_dashboard_counts_next_send_and_scheduler(admin, app, smtp, clock):
    page = admin.get("/admin/").get_data(as_text=True)
    assert "Confirmed 0 of 3" in page and '<progress max="3" value="0"' in page
    assert "In 6 days" in page  # follow-ups on Tue 8 Sep
    assert "does not seem to be running" not in page and "all done" in page
    clock.shift(dt.timedelta(minutes=16))  # three 5-minute intervals without a tick
    assert "The scheduler does not seem to be running" in admin.get("/admin/").get_data(as_text=True)
    _confirm(app, smtp, "amira@example.org")
    sid = staff_id(app, "ben@example.org")
    post(admin, f"/admin/people/{sid}/social-media/exempt", {"reason": "On leave"},
         prefix="social-media-exempt")
    page = admin.get("/admin/").get_data(as_text=True)
    assert "Confirmed 1 of 2" in page and '<progress max="2" value="1"' in page
    assert "None: every email so far was accepted" in page


def test_dashboard_shows_overdue_failures_and_a_live_scheduler(admin, app, cli, console, smtp, clock):
    smtp.inbox.refuse["chloe@example.org"] = "550 5.1.1 No such user"
    cli("tick", "--at", "2026-09-08T09:00+01:00", config=console)
    clock.move_to(dt.datetime(2026, 9, 23, 9, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    cli("tick", "--at", "2026-09-23T09:00+01:00", config=console)
    assert sign_in(admin).status_code == 303  # three weeks on: the session had ended
    page = admin.get("/admin/").get_data(as_text=True)
    assert "does not seem to be running" not in page
    assert "all done" not in page and "some sends failed" in page
    assert "550 5.1.1 No such user" in page and "chloe@example.org" in page
    counts = page[page.index('class="counts"'):]
    overdue = counts[counts.index("Overdue"):]
    assert "<dd>3</dd>" in overdue[:60]


def test_schedule_in_words_and_the_coming_timeline(admin):
    page = admin.get("/admin/schedule").get_data(as_text=True)
    assert "A new cycle opens every year on 1 September at 08:00 (Europe/London)" in page
    assert "Follow-ups go 7, 14 days after" in page
    assert "weekend or a public holiday (GB-ENG)" in page
    # The timeline counts people per line; each count leads to their names.
    rows = re.findall(r"<tr><td>(.*?)</tr>", page, re.S)
    follow_up = next(row for row in rows if "follow-up 1" in row)
    assert "Tue 8 Sep 2026 08:00" in follow_up and ">3<" in follow_up
    assert "amira@example.org" not in page
    who = re.search(r'href="(/admin/schedule/who\?[^"]+)"', follow_up).group(1)
    names = admin.get(html.unescape(who)).get_data(as_text=True)
    assert "Follow-up 1: Use of Social Media Policy" in names
    for person in ("Amira Khan &lt;amira@example.org&gt;", "Ben Lewis", "Chloe Evans"):
        assert person in names
    assert "7 days after first reminder (1 Sep)" in names
    # A moment the timeline has no such line for names nobody; nonsense is not found.
    assert admin.get("/admin/schedule/who?policy=social-media&at=2026-09-09T07:00:00%2B00:00"
                     "&what=follow-up+1").status_code == 200
    for bad in ("at=yesterday", "at=2026-09-08T07:00:00&policy=social-media",
                "at=2026-09-08T07:00:00%2B00:00&policy=nope"):
        assert admin.get(f"/admin/schedule/who?{bad}").status_code == 404


def test_test_email_goes_to_the_signed_in_admin_marked_as_a_sample(admin, smtp):
    smtp.inbox.clear()
    response = post(admin, "/admin/schedule/test-email")
    assert response.status_code == 303
    assert "A sample reminder was sent" in admin.get("/admin/schedule").get_data(as_text=True)
    message, = smtp.inbox.to(ADMIN)
    assert message["Subject"].startswith("[SAMPLE - test email]")
    text = message.get_body(("plain",)).get_content()
    assert "/c/SAMPLE-this-is-a-test-email" in text


def test_test_email_with_the_mail_server_down_says_so(app, console, clock, cli):
    from admin_helpers import sign_in
    from workflow import config as config_mod
    from workflow.app import create_app

    text = console.read_text()
    port = free_port()  # nothing listens here
    broken = console.with_name("broken.toml")
    broken.write_text(text.replace("port = ", f"port = {port}\n# was ", 1))
    application = create_app(config_mod.load(broken))
    try:
        client = application.test_client()
        sign_in(client)
        response = post(client, "/admin/schedule/test-email", follow_redirects=True)
        page = response.get_data(as_text=True)
        assert response.status_code == 200
        assert "The test email was not sent" in page and f"127.0.0.1:{port}" in page
        assert "Traceback" not in page
    finally:
        application.extensions["signoff"].db.dispose()


def test_evidence_page_and_csv_export(admin, app, smtp):
    _confirm(app, smtp, "amira@example.org")
    sid = staff_id(app, "ben@example.org")
    post(admin, f"/admin/people/{sid}/social-media/exempt", {"reason": "Maternity leave"},
         prefix="social-media-exempt")
    sid = staff_id(app, "chloe@example.org")
    post(admin, f"/admin/people/{sid}/social-media/paper",
         {"signed_on": "2026-09-01", "kept": "Staff file", "note": "Signed in the office"},
         prefix="social-media-paper")
    with app.extensions["signoff"].db.read() as session:
        cycle = session.scalars(select(Cycle)).one()
        version = session.scalars(select(models.PolicyVersion)).one()

    listing = admin.get("/admin/evidence").get_data(as_text=True)
    assert f"/admin/evidence/{cycle.id}" in listing
    page = admin.get(f"/admin/evidence/{cycle.id}").get_data(as_text=True)
    assert version.sha256 in page
    assert "self (online)" in page
    assert (f"paper, recorded by {ADMIN}, signed 1 Sep 2026, kept in Staff file: "
            "Signed in the office") in page
    assert "Maternity leave" in page and "Nobody: everyone asked has confirmed or is exempt" in page

    export = admin.get(f"/admin/evidence/{cycle.id}/export.csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    assert 'filename="signoff-social-media-2026.csv"' in export.headers["Content-Disposition"]
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(export.get_data(as_text=True)))}
    assert rows["amira@example.org"]["status"] == "confirmed"
    assert rows["amira@example.org"]["method"] == "self"
    assert rows["amira@example.org"]["user_agent"] == "PhoneBrowser/1.0"
    assert rows["ben@example.org"]["status"] == "exempt"
    assert rows["ben@example.org"]["exempt_reason"] == "Maternity leave"
    assert rows["chloe@example.org"]["method"] == "paper"
    # A paper sign-off's evidence, in columns after every earlier one; then a decline's.
    header = export.get_data(as_text=True).splitlines()[0].split(",")
    assert header[-16:] == ["method", "ip_address", "user_agent", "exempt_reason", "recorded_by",
                            "signed_on", "paper_kept", "note", "declined_at",
                            "decline_statement", "decline_reason", "decline_outcome",
                            "decline_resolution", "earlier_confirmed_at", "earlier_version",
                            "version_approved"]
    chloe = rows["chloe@example.org"]
    assert (chloe["recorded_by"], chloe["signed_on"], chloe["paper_kept"], chloe["note"]) == (
        ADMIN, "2026-09-01", "Staff file", "Signed in the office")
    amira = rows["amira@example.org"]
    assert (amira["recorded_by"], amira["signed_on"], amira["paper_kept"], amira["note"]) == (
        "", "", "", "")
    assert admin.get("/admin/evidence/9999").status_code == 404


def test_a_large_cycles_evidence_is_listed_a_page_at_a_time(admin, app, smtp, monkeypatch):
    from workflow.admin import evidence

    monkeypatch.setattr(evidence, "PER_PAGE", 2)
    _confirm(app, smtp, "chloe@example.org")
    with app.extensions["signoff"].db.read() as session:
        cycle = session.scalars(select(Cycle)).one()
    first = html.unescape(admin.get(f"/admin/evidence/{cycle.id}").get_data(as_text=True))
    second = html.unescape(admin.get(f"/admin/evidence/{cycle.id}?page=2")
                           .get_data(as_text=True))
    for page in (first, second):  # the counts are the cycle's, whatever the page
        assert "1 confirmed,\n0 exempt, 2 not confirmed" in page
        assert "The 3 people are listed 2 a page; the CSV has them all." in page
        assert "Page" in page and " of 2</span>" in page
    # Confirmed first, then the rest by name.
    assert "chloe@example.org" in first and "Amira Khan <amira@example.org>" in first
    assert "ben@example.org" not in first
    assert "Ben Lewis <ben@example.org>" in second and "amira@example.org" not in second
    assert "1 listed on page 1." in second  # the confirmations, on the other page
    assert "?page=2" in first and "?page=1" in second
    # A page past the end is the last one.
    assert "Ben Lewis" in admin.get(f"/admin/evidence/{cycle.id}?page=99").get_data(as_text=True)


def test_looking_at_every_admin_page_changes_nothing(admin, app):
    def snapshot():
        with app.extensions["signoff"].db.read() as session:
            return {table.name: session.scalar(select(func.count()).select_from(table))
                    for table in models.Base.metadata.sorted_tables}

    sid = staff_id(app, "amira@example.org")
    before = snapshot()
    for url in ("/admin/", "/admin/people", "/admin/people?q=ben&sort=status", f"/admin/people/{sid}",
                f"/admin/people/{sid}/edit", "/admin/people/new", "/admin/schedule",
                "/admin/evidence", "/admin/evidence/1", "/admin/evidence/1/export.csv",
                "/admin/login"):
        assert admin.get(url).status_code in (200, 302), url
        assert admin.head(url).status_code in (200, 302), url
    assert snapshot() == before
    with app.extensions["signoff"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)
                              .where(Event.actor == ADMIN)) == 1  # signing in, nothing else
