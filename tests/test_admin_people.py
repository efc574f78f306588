"""The roster in the console: search, sort, add, edit, deactivate, and a CSV upload previewed before
anything is written. Bad input gets a message in the page and changes nothing."""

from __future__ import annotations

import io
import re
from pathlib import Path

from sqlalchemy import func, select

from admin_helpers import (ADMIN, admin, app, clock, console, csrf, post, staff_id,  # noqa: F401
                           upload, upload_id)
from helpers import flat
from workflow.models import Event, Staff


def _people(app):
    with app.extensions["signoff"].db.read() as session:
        return {s.email: s for s in session.scalars(select(Staff))}


def test_list_search_and_sort(admin, app):
    page = admin.get("/admin/people").get_data(as_text=True)
    assert page.index("Amira Khan") < page.index("Ben Lewis") < page.index("Chloe Evans")
    assert "3 people on the roster" in page
    found = admin.get("/admin/people?q=room+leader").get_data(as_text=True)
    assert "Ben Lewis" in found and "Amira Khan" not in found and "1 of 3 people match" in found
    by_role = admin.get("/admin/people?sort=role").get_data(as_text=True)
    assert by_role.index("Amira Khan") < by_role.index("Ben Lewis") < by_role.index("Chloe Evans")
    by_email_desc = admin.get("/admin/people?sort=email").get_data(as_text=True)
    assert by_email_desc.index("amira@") < by_email_desc.index("chloe@")
    bad = admin.get("/admin/people?sort=salary")
    assert bad.status_code == 200 and "Cannot sort by &#39;salary&#39;" in bad.get_data(as_text=True)


def test_status_sort_puts_the_unconfirmed_first(admin, app):
    sid = staff_id(app, "chloe@example.org")
    post(admin, f"/admin/people/{sid}/social-media/paper",
         {"signed_on": "2026-09-01", "kept": "Staff file"},
         prefix="social-media-paper")
    page = admin.get("/admin/people?sort=status").get_data(as_text=True)
    table = page[page.index("<tbody>"):]
    assert table.index("Amira Khan") < table.index("Ben Lewis") < table.index("Chloe Evans")
    assert "status-confirmed" in page


def test_add_person_validates_and_records_who(admin, app):
    bad = post(admin, "/admin/people/new", {"name": "  ", "email": "dan@", "active": "y"})
    assert bad.status_code == 400
    text = bad.get_data(as_text=True)
    assert "Nothing was saved" in text and "Enter the person&#39;s name." in text
    assert "not a valid email address" in text
    duplicate = post(admin, "/admin/people/new", {"name": "Amira Again", "email": "AMIRA@example.org",
                                                 "active": "y"})
    assert duplicate.status_code == 409 and "already on the roster" in duplicate.get_data(as_text=True)
    assert len(_people(app)) == 3

    added = post(admin, "/admin/people/new", {"name": "Dan Ode", "email": "Dan@Example.org",
                                             "role": "Cook", "start_date": "2026-09-14",
                                             "active": "y"})
    assert added.status_code == 303
    dan = _people(app)["dan@example.org"]
    assert dan.name == "Dan Ode" and dan.role == "Cook" and dan.active
    assert dan.start_date.isoformat() == "2026-09-14"
    with app.extensions["signoff"].db.read() as session:
        event = session.scalars(select(Event).where(Event.kind == "staff_added",
                                                    Event.staff_id == dan.id)).one()
    assert event.actor == ADMIN


def test_edit_and_deactivate(admin, app):
    sid = staff_id(app, "ben@example.org")
    form = admin.get(f"/admin/people/{sid}/edit").get_data(as_text=True)
    assert 'value="Ben Lewis"' in form
    taken = post(admin, f"/admin/people/{sid}/edit", {"name": "Ben Lewis",
                                                     "email": "amira@example.org", "active": "y"})
    assert taken.status_code == 409 and "belongs to someone else" in taken.get_data(as_text=True)
    assert _people(app)["ben@example.org"].name == "Ben Lewis"

    saved = post(admin, f"/admin/people/{sid}/edit", {"name": "Benjamin Lewis",
                                                     "email": "benjamin@example.org",
                                                     "role": "Deputy", "active": "y"})
    assert saved.status_code == 303
    people = _people(app)
    assert "ben@example.org" not in people
    assert people["benjamin@example.org"].name == "Benjamin Lewis"

    assert post(admin, f"/admin/people/{sid}/active", {"active": "no"}).status_code == 303
    assert not _people(app)["benjamin@example.org"].active
    with app.extensions["signoff"].db.read() as session:
        changes = [e.detail["changes"] for e in session.scalars(
            select(Event).where(Event.kind == "staff_updated", Event.actor == ADMIN)
            .order_by(Event.id))]
    assert changes[0]["email"] == ["ben@example.org", "benjamin@example.org"]
    assert changes[1] == {"active": ["True", "False"]}
    page = admin.get("/admin/people").get_data(as_text=True)
    assert "(inactive)" in page


def test_upload_previews_without_writing_then_applies(admin, app):
    csv = (b"name,email,role,active\n"
           b"Amira Khan,amira@example.org,Manager,yes\n"   # updated
           b"Ben Lewis,ben@example.org,Room Leader,no\n"   # made inactive
           b"Dan Ode,dan@example.org,Cook,yes\n")          # added
    preview = upload(admin, csv)
    text = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert "1 added" in text and "1 updated" in text and "1 made inactive" in text
    assert "role: Practitioner → Manager" in text
    assert "dan@example.org" not in _people(app) and _people(app)["ben@example.org"].active

    applied = post(admin, "/admin/people/upload/apply", {"upload": upload_id(preview)})
    assert applied.status_code == 303
    people = _people(app)
    assert people["dan@example.org"].role == "Cook" and not people["ben@example.org"].active
    assert people["amira@example.org"].role == "Manager"
    assert "1 added, 1 updated, 1 made inactive" in admin.get("/admin/people").get_data(as_text=True)
    # The stored upload is used once.
    again = post(admin, "/admin/people/upload/apply", {"upload": upload_id(preview)})
    assert again.status_code == 400 and "no longer available" in again.get_data(as_text=True)


def test_bad_uploads_change_nothing_and_name_every_line(admin, app):
    bad = upload(admin, b"name,email\nDan,dan@\n,eve@example.org\nAmira Khan,amira@example.org\n")
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "Nothing was changed" in text
    assert "line 2" in text and "line 3" in text and "Apply these changes" not in text
    assert not_utf8(admin).status_code == 400
    empty = admin.post("/admin/people/upload", data={"csrf_token": _token(admin)},
                       content_type="multipart/form-data")
    assert empty.status_code == 400 and "Choose a CSV file" in empty.get_data(as_text=True)
    forged = post(admin, "/admin/people/upload/apply", {"upload": "../../secret_key"})
    assert forged.status_code == 400 and "no longer available" in forged.get_data(as_text=True)
    with app.extensions["signoff"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(Staff)) == 3


def not_utf8(client):
    response = upload(client, "name,email\nZoë,zoe@example.org\n".encode("latin-1"))
    assert "not UTF-8" in response.get_data(as_text=True)
    return response


def _token(client):
    from admin_helpers import csrf

    return csrf(client)


ROSTERS = Path(__file__).parent / "rosters"


def test_an_mis_export_previews_with_its_columns_named_and_applies(admin, app):
    preview = upload(admin, (ROSTERS / "mis_export.csv").read_bytes(), "mis_export.csv")
    text = flat(preview.get_data(as_text=True))
    assert preview.status_code == 200, text
    assert "email from “Email Address”" in text and "Ignored: “Staff ID”, “Title”, “Phone”" in text
    assert "1 added" in text and "0 made inactive" in text
    assert post(admin, "/admin/people/upload/apply",
                {"upload": upload_id(preview)}).status_code == 303
    assert _people(app)["dana@example.org"].first_name == "Dana"


def test_known_as_and_groups_are_edited_on_the_person_form(admin, app):
    sid = staff_id(app, "ben@example.org")
    saved = post(admin, f"/admin/people/{sid}/edit", {
        "name": "Benjamin Lewis", "first_name": "Ben", "email": "ben@example.org",
        "role": "Room Leader", "groups": "teaching;  First Aid; teaching", "active": "y"})
    assert saved.status_code == 303
    ben = _people(app)["ben@example.org"]
    assert (ben.name, ben.first_name, ben.groups) == ("Benjamin Lewis", "Ben",
                                                       ("teaching", "First Aid"))
    page = flat(admin.get(f"/admin/people/{sid}").get_data(as_text=True))
    assert "Known as Ben" in page and "Groups teaching; First Aid" in page
    form = admin.get(f"/admin/people/{sid}/edit").get_data(as_text=True)
    assert 'value="teaching; First Aid"' in form


def test_the_whole_staff_list_box_lists_who_would_be_made_inactive_first(admin, app):
    response = admin.post("/admin/people/upload", data={
        "csrf_token": csrf(admin), "full": "y",
        "file": (io.BytesIO((ROSTERS / "mis_export.csv").read_bytes()), "mis_export.csv")},
        content_type="multipart/form-data")
    text = flat(response.get_data(as_text=True))
    assert response.status_code == 200, text
    assert "as the whole staff list" in text
    assert text.index("Made inactive: not in the staff list") < text.index("Added")
    assert "Chloe Evans chloe@example.org" in text and _people(app)["chloe@example.org"].active
    assert post(admin, "/admin/people/upload/apply",
                {"upload": upload_id(response)}).status_code == 303
    assert not _people(app)["chloe@example.org"].active


def test_unknown_headings_are_chosen_in_the_console_then_previewed(admin, app):
    asked = upload(admin, (ROSTERS / "unknown_headings.csv").read_bytes(), "unknown.csv")
    text = flat(asked.get_data(as_text=True))
    assert asked.status_code == 400 and "Which column is which?" in text
    assert "no column for email or name" in text and "Person" in text
    which = re.search(r'name="upload" type="hidden" value="(\d+)"', asked.get_data(as_text=True))
    chosen = post(admin, "/admin/people/upload/columns", {
        "upload": which[1], "name": "0", "email": "1", "role": "2"})
    text = flat(chosen.get_data(as_text=True))
    assert chosen.status_code == 200, text
    assert "1 added" in text and "role: Practitioner → Nursery Practitioner" in text
    assert post(admin, "/admin/people/upload/apply",
                {"upload": upload_id(chosen)}).status_code == 303
    assert _people(app)["dana@example.org"].role == "Cook"


def test_the_overdue_filter_shows_only_overdue_people(admin, app):
    page = flat(admin.get("/admin/people?status=confirmed").get_data(as_text=True))
    assert "0 of 3 people confirmed" in page and "Amira Khan" not in page
    assert "3 of 3 people pending" in flat(admin.get("/admin/people?status=pending")
                                           .get_data(as_text=True))
    odd = admin.get("/admin/people?status=nonsense")
    assert odd.status_code == 200 and "Amira Khan" in odd.get_data(as_text=True)


def test_a_long_roster_is_paged_and_sorted_across_pages(admin, app, cli, console):
    more = console.parent / "many.csv"
    more.write_text("name,email\n" + "".join(f"Zed {n:03},zed{n:03}@example.org\n"
                                             for n in range(150)))
    assert cli("staff", "import", str(more), config=console).exit_code == 0
    first = flat(admin.get("/admin/people").get_data(as_text=True))
    assert "153 people on the roster. Showing 1 to 100." in first and "Page 1 of 2" in first
    assert "Amira Khan" in first and "Zed 096" in first and "Zed 097" not in first
    second = admin.get("/admin/people?page=2").get_data(as_text=True)
    assert "Zed 097" in second and "Zed 149" in second and "Amira Khan" not in second
    assert 'href="/admin/people?sort=name&amp;page=1">Previous' in second
    # Sorted by status in the database: Amira (confirmed) comes after every pending person.
    sid = staff_id(app, "amira@example.org")
    post(admin, f"/admin/people/{sid}/social-media/paper",
         {"signed_on": "2026-09-01", "kept": "Staff file"}, prefix="social-media-paper")
    admin.get("/admin/people")  # the flash about the paper sign-off, read
    table = lambda url: admin.get(url).get_data(as_text=True).split("<tbody>")[1]  # noqa: E731
    by_status = table("/admin/people?sort=status&page=2")
    assert by_status.rindex("status-pending") < by_status.index("Amira Khan")
    assert "Amira Khan" not in table("/admin/people?sort=status")
    assert "1 of 153 people confirmed" in flat(
        admin.get("/admin/people?status=confirmed").get_data(as_text=True))
