"""A person's page and what an admin can do there: resend, new link, extend, exempt, paper sign-off.
Each action is a POST, an event naming the admin, and bad input changes nothing."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from admin_helpers import ADMIN, admin, app, clock, console, post, staff_id  # noqa: F401
from conftest import link_in
from helpers import flat
from workflow.models import Confirmation, Event, Link, Outbox, Request, Staff

SLUG = "social-media"


def _request(app, email):
    with app.extensions["signoff"].db.read() as session:
        return session.scalars(select(Request).join(Staff).where(Staff.email == email)).one()


def _events(app, kind):
    with app.extensions["signoff"].db.read() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def _act(client, app, email, action, **data):
    sid = staff_id(app, email)
    return post(client, f"/admin/people/{sid}/{SLUG}/{action}", data,
                prefix=f"{SLUG}-{action}" if data else "")


def test_person_page_shows_history_and_actions(admin, app):
    page = admin.get(f"/admin/people/{staff_id(app, 'amira@example.org')}").get_data(as_text=True)
    assert "Amira Khan" in page and "first reminder sent" in page
    assert "Resend their link" in page and "Record paper sign-off" in page
    assert admin.get("/admin/people/99999").status_code == 404


def test_exempt_needs_a_reason_and_then_stops_reminders(admin, app, cli, console, smtp):
    refused = _act(admin, app, "ben@example.org", "exempt", reason="   ")
    assert refused.status_code == 400
    assert "Give a reason" in refused.get_data(as_text=True)
    assert _request(app, "ben@example.org").exempt_at is None

    done = _act(admin, app, "ben@example.org", "exempt", reason="Long-term sick leave")
    assert done.status_code == 303
    req = _request(app, "ben@example.org")
    assert req.exempt_reason == "Long-term sick leave" and req.closed_at is not None
    event, = _events(app, "exempted")
    assert event.actor == ADMIN and event.detail["reason"] == "Long-term sick leave"
    assert "exempt" in admin.get(done.headers["Location"]).get_data(as_text=True)

    again = _act(admin, app, "ben@example.org", "exempt", reason="again")
    assert again.status_code == 409 and "already exempt" in again.get_data(as_text=True)

    smtp.inbox.clear()
    assert cli("tick", "--at", "2026-09-08T09:00+01:00", config=console).exit_code == 0
    assert not smtp.inbox.to("ben@example.org") and smtp.inbox.to("amira@example.org")


PAPER = {"signed_on": "2026-08-28",  # before the cycle opened: the form went round early
         "kept": "Staff file, office cabinet", "note": "Signed the paper copy in the office"}


def test_paper_sign_off_is_stored_as_paper_never_as_self(admin, app, smtp):
    link = link_in(smtp.inbox.to("chloe@example.org")[0])
    done = _act(admin, app, "chloe@example.org", "paper", **PAPER)
    assert done.status_code == 303
    with app.extensions["signoff"].db.read() as session:
        conf = session.scalars(select(Confirmation)).one()
    assert conf.method == "paper" and conf.recorded_by == ADMIN
    assert conf.signed_on == dt.date(2026, 8, 28)
    assert conf.paper_kept == "Staff file, office cabinet"
    assert conf.reason == "Signed the paper copy in the office" and conf.ip_address is None
    event, = _events(app, "confirmed")
    assert event.actor == ADMIN and event.detail["method"] == "paper"
    assert event.detail["signed_on"] == "2026-08-28"
    assert event.detail["paper_kept"] == "Staff file, office cabinet"
    assert event.detail["reason"] == "Signed the paper copy in the office"
    # The person's own page says the office recorded it, and when; the office's note is its own.
    own = flat(app.test_client().get(link[len("http://signoff.test"):]).get_data(as_text=True))
    assert "The office recorded this for you, from your signed paper form." in own
    assert "on Wednesday 2 September 2026 at 10:00" in own
    assert "Signed the paper copy" not in own and "office cabinet" not in own
    again = _act(admin, app, "chloe@example.org", "paper", **{**PAPER, "note": "twice"})
    assert again.status_code == 409
    assert "already confirmed" in again.get_data(as_text=True)


def test_the_person_page_shows_who_recorded_a_paper_sign_off_when_signed_and_where_kept(
        admin, app):
    done = _act(admin, app, "chloe@example.org", "paper", **PAPER)
    page = admin.get(done.headers["Location"]).get_data(as_text=True)
    details = {flat(dt_): flat(dd) for dt_, dd in
               re.findall(r"<dt>(.*?)</dt>\s*<dd[^>]*>(.*?)</dd>", page, re.S)}
    assert details["How"] == f"paper sign-off recorded by {ADMIN}"
    assert details["Date signed"] == "Friday 28 August 2026"
    assert details["Paper form kept"] == "Staff file, office cabinet"
    assert details["Note"] == "Signed the paper copy in the office"
    history = flat(page[page.index('id="history"'):])
    assert ("confirmed (paper, signed Friday 28 August 2026, kept in Staff file, office cabinet): "
            "Signed the paper copy in the office") in history


def test_a_paper_sign_off_without_a_note_is_fine(admin, app):
    done = _act(admin, app, "chloe@example.org", "paper", **{**PAPER, "note": "  "})
    assert done.status_code == 303
    with app.extensions["signoff"].db.read() as session:
        conf = session.scalars(select(Confirmation)).one()
    assert conf.reason is None and conf.paper_kept == "Staff file, office cabinet"
    assert "Note" not in admin.get(done.headers["Location"]).get_data(as_text=True)


def test_paper_sign_off_needs_the_date_signed_not_in_the_future_and_where_it_is_kept(admin, app):
    field = "social-media-paper-"
    for change, name, message in (
            ({"signed_on": ""}, "signed_on", "Enter the date the form was signed."),
            ({"signed_on": "28/08/2026"}, "signed_on", "Not a valid date"),
            ({"signed_on": "2026-09-03"}, "signed_on", "The date signed cannot be in the future."),
            ({"kept": "  "}, "kept", "Say where the signed form is kept"),
            ({"kept": "x" * 201}, "kept", "Keep where it is kept under 200 characters."),
            ({"note": "x" * 501}, "note", "Keep the note under 500 characters.")):
        response = _act(admin, app, "chloe@example.org", "paper", **{**PAPER, **change})
        page = response.get_data(as_text=True)
        assert response.status_code == 400, change
        # The message is by its field, and the field says so to a screen reader.
        error = re.search(rf'<p class="error" id="({field}{name}-error-1)">([^<]*)</p>', page)
        assert error and message in error.group(2), (change, page)
        box = re.search(rf'<(?:input|textarea)[^>]*id="{field}{name}"[^>]*>', page).group(0)
        assert 'aria-invalid="true"' in box and error.group(1) in box, box
        assert "Nothing was changed" in page
    with app.extensions["signoff"].db.read() as session:
        assert session.scalars(select(Confirmation)).all() == []
    assert _events(app, "confirmed") == []
    assert _request(app, "chloe@example.org").closed_at is None
    # The day it is today is not the future.
    assert _act(admin, app, "chloe@example.org", "paper",
                **{**PAPER, "signed_on": "2026-09-02"}).status_code == 303


def test_resend_queues_a_fresh_link_the_next_tick_sends(admin, app, cli, console, smtp):
    first = link_in(smtp.inbox.to("amira@example.org")[0])
    assert _act(admin, app, "amira@example.org", "resend").status_code == 303
    with app.extensions["signoff"].db.read() as session:
        row = session.scalars(select(Outbox).where(Outbox.key.like("req:%:resend:%"))).one()
    assert row.kind == "reminder" and row.status == "pending"
    assert _events(app, "resend_queued")[0].actor == ADMIN

    assert cli("tick", "--at", "2026-09-02T10:00+01:00", config=console).exit_code == 0
    messages = smtp.inbox.to("amira@example.org")
    assert len(messages) == 2
    second = link_in(messages[1])
    assert second != first
    client = app.test_client()
    for link in (first, second):  # a resend leaves the older link working
        assert client.get(link[len("http://signoff.test"):]).status_code == 200


def test_new_link_stops_the_old_ones(admin, app, cli, console, smtp):
    old = link_in(smtp.inbox.to("amira@example.org")[0])[len("http://signoff.test"):]
    client = app.test_client()
    assert client.get(old).status_code == 200
    assert _act(admin, app, "amira@example.org", "new-link").status_code == 303
    assert client.get(old).status_code == 410
    event, = _events(app, "link_reissued")
    assert event.actor == ADMIN and event.detail["revoked"] == 1

    assert cli("tick", "--at", "2026-09-02T10:00+01:00", config=console).exit_code == 0
    new = link_in(smtp.inbox.to("amira@example.org")[-1])[len("http://signoff.test"):]
    assert client.get(new).status_code == 200
    with app.extensions["signoff"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(Link)
                              .where(Link.revoked_at.is_(None))
                              .join(Request).join(Staff)
                              .where(Staff.email == "amira@example.org")) == 1


def test_extend_due_date_moves_overdue_and_refuses_bad_dates(admin, app):
    before = _request(app, "ben@example.org").overdue_at
    for value, message in (("2026-09-01", "must be after today"),
                           ("2027-09-30", "before next year")):
        response = _act(admin, app, "ben@example.org", "extend", due=value)
        assert response.status_code == 409 and message in response.get_data(as_text=True)
    garbled = _act(admin, app, "ben@example.org", "extend", due="next tuesday")
    assert garbled.status_code == 400 and "Not a valid date" in garbled.get_data(as_text=True)
    assert _request(app, "ben@example.org").overdue_at == before

    done = _act(admin, app, "ben@example.org", "extend", due="2026-10-30", reason="Back from leave")
    assert done.status_code == 303
    req = _request(app, "ben@example.org")
    assert req.due_extended_to.astimezone(ZoneInfo("Europe/London")).date() == dt.date(2026, 10, 30)
    # Overdue from the start of the day after the new date (GMT by then), not on it.
    assert req.overdue_at == dt.datetime(2026, 10, 31, tzinfo=ZoneInfo("Europe/London"))
    assert req.overdue_at > before
    event, = _events(app, "due_extended")
    assert event.actor == ADMIN and event.detail == {"due": "2026-10-30", "reason": "Back from leave"}
    assert "until Friday 30 October 2026" in admin.get(done.headers["Location"]).get_data(as_text=True)


def test_extend_refuses_a_date_not_later_than_the_current_due_date(admin, app):
    before = _request(app, "ben@example.org")
    # Asked to confirm by 22 September, 21 days after the first reminder: overdue from the 23rd.
    assert before.overdue_at == dt.datetime(2026, 9, 23, tzinfo=ZoneInfo("Europe/London"))
    for value in ("2026-09-15", "2026-09-22"):  # after today, but not after their due date
        response = _act(admin, app, "ben@example.org", "extend", due=value)
        page = response.get_data(as_text=True)
        assert response.status_code == 409, value
        assert "later than their current one, Tuesday 22 September 2026" in page
    after = _request(app, "ben@example.org")
    assert (after.overdue_at, after.due_extended_to) == (before.overdue_at, None)
    assert not _events(app, "due_extended")

    assert _act(admin, app, "ben@example.org", "extend", due="2026-10-30").status_code == 303
    shorter = _act(admin, app, "ben@example.org", "extend", due="2026-10-01")
    assert shorter.status_code == 409
    assert "later than their current one, Friday 30 October 2026" in shorter.get_data(as_text=True)
    assert _request(app, "ben@example.org").due_extended_to.astimezone(
        ZoneInfo("Europe/London")).date() == dt.date(2026, 10, 30)
    assert len(_events(app, "due_extended")) == 1


def test_resend_says_it_goes_with_the_next_scheduled_run(admin, app):
    page = admin.get(f"/admin/people/{staff_id(app, 'amira@example.org')}").get_data(as_text=True)
    assert "again now" not in page
    assert "with the scheduler's next run (within 5 minutes)" in page  # interval_seconds = 300
    done = _act(admin, app, "amira@example.org", "resend")
    flashed = admin.get(done.headers["Location"]).get_data(as_text=True)
    assert "goes out with the scheduler&#39;s next run (within 5 minutes)" in flashed
    done = _act(admin, app, "amira@example.org", "new-link")
    flashed = admin.get(done.headers["Location"]).get_data(as_text=True)
    assert "goes out with the scheduler&#39;s next run (within 5 minutes)" in flashed


def test_actions_on_an_inactive_person_are_refused(admin, app):
    sid = staff_id(app, "ben@example.org")
    assert post(admin, f"/admin/people/{sid}/active", {"active": "no"}).status_code == 303
    response = _act(admin, app, "ben@example.org", "exempt", reason="left")
    assert response.status_code == 409 and "is inactive" in response.get_data(as_text=True)
    assert _request(app, "ben@example.org").exempt_at is None


def test_unknown_policy_or_person_is_a_404(admin, app):
    sid = staff_id(app, "ben@example.org")
    assert post(admin, f"/admin/people/{sid}/no-such-policy/resend").status_code == 404
    assert post(admin, f"/admin/people/424242/{SLUG}/resend").status_code == 404
    assert re.search(r"not one we know", post(admin, "/admin/people/424242/x/resend")
                     .get_data(as_text=True))
