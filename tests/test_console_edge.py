"""The console's door held shut over time: a new CSRF token at sign-in, sessions that end when idle
and after at most seven days, roster uploads that belong to the admin who made them and go away,
files readable by signoff's own user only. Flask test client and the real command, both databases."""

from __future__ import annotations

import datetime as dt
import stat

from sqlalchemy import func, select

from admin_helpers import (ADMIN, PASSWORD, admin, app, clock, console, csrf,  # noqa: F401
                           post, sign_in, upload, upload_id)
from conftest import ROSTER, run_signoff, write_config
from workflow.models import Event, RosterUpload, Staff

NEW_STARTER = b"name,email\nDan Ode,dan@example.org\n"


def test_signing_in_gives_a_new_csrf_token_and_the_old_one_stops_working(app, clock):
    client = app.test_client()
    before = csrf(client)  # what anyone who saw the sign-in page (or planted a token) holds
    assert sign_in(client).status_code == 303
    assert csrf(client) != before
    planted = client.post("/admin/people/new", data={"csrf_token": before, "name": "Eve",
                                                     "email": "eve@example.org"})
    assert planted.status_code == 400
    with app.extensions["signoff"].db.read() as session:
        assert session.scalar(select(Staff).where(Staff.email == "eve@example.org")) is None


def test_sign_in_takes_no_line_breaks_or_nul_bytes(app, clock, caplog):
    client = app.test_client()
    split = post(client, "/admin/login", {"email": ADMIN, "password": PASSWORD,
                                          "next": "/admin/people\r\nSet-Cookie: x=1"})
    assert split.status_code == 303 and split.headers["Location"] == "/admin/"
    other = app.test_client()
    nul = post(other, "/admin/login", {"email": "office\x00@example.org", "password": PASSWORD})
    assert nul.status_code == 400 and "not one this site can answer" in nul.get_data(as_text=True)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def _still_in(client) -> bool:
    response = client.get("/admin/")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def test_a_console_session_ends_after_eight_idle_hours(admin, clock):
    assert _still_in(admin)
    for _ in range(3):  # a working day with long gaps: each visit keeps it going
        clock.shift(dt.timedelta(hours=7, minutes=50))
        assert _still_in(admin)
    clock.shift(dt.timedelta(hours=8))
    ended = admin.get("/admin/people?q=ben")
    assert ended.status_code == 302
    assert ended.headers["Location"] == "/admin/login?next=/admin/people?q%3Dben"
    page = admin.get(ended.headers["Location"]).get_data(as_text=True)
    assert "You were signed out after a while" in page
    assert sign_in(admin).status_code == 303 and _still_in(admin)


def test_a_busy_console_session_still_ends_seven_days_after_signing_in(admin, clock):
    for hours in range(7, 7 * 24, 7):  # a visit every seven hours, day and night
        clock.shift(dt.timedelta(hours=7))
        assert _still_in(admin), f"ended after {hours} hours"
    clock.shift(dt.timedelta(hours=7))  # 168 hours: seven days
    assert not _still_in(admin)


def test_the_idle_time_is_the_settings_to_choose(console, clock):
    from workflow import config as config_mod
    from workflow.app import create_app

    console.write_text(console.read_text() + "\n[web]\nsession_idle_hours = 1\n")
    application = create_app(config_mod.load(console))
    application.config["TESTING"] = False
    try:
        client = application.test_client()
        assert sign_in(client).status_code == 303
        clock.shift(dt.timedelta(minutes=59))
        assert _still_in(client)
        clock.shift(dt.timedelta(minutes=61))
        assert not _still_in(client)
    finally:
        application.extensions["signoff"].db.dispose()


def test_an_upload_is_applied_once_and_only_by_the_admin_who_made_it(admin, app, cli, console):
    added = cli("admin", "add", "deputy@example.org", "--password-stdin", config=console,
                input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    deputy = app.test_client()
    assert sign_in(deputy, "deputy@example.org").status_code == 303

    preview = upload(admin, NEW_STARTER)
    assert preview.status_code == 200
    taken = post(deputy, "/admin/people/upload/apply", {"upload": upload_id(preview)})
    assert taken.status_code == 400 and "no longer available" in taken.get_data(as_text=True)
    assert post(admin, "/admin/people/upload/apply",
                {"upload": upload_id(preview)}).status_code == 303
    again = post(admin, "/admin/people/upload/apply", {"upload": upload_id(preview)})
    assert again.status_code == 400
    with app.extensions["signoff"].db.read() as session:
        added = session.scalars(select(Event).where(Event.kind == "staff_added",
                                                    Event.actor == ADMIN)).all()
        assert len(added) == 1 and session.scalar(select(func.count(RosterUpload.id))) == 0


def test_the_tick_removes_uploads_left_for_a_day(admin, app, cli, console):
    preview = upload(admin, NEW_STARTER)  # at 10:00 on 2 September, and never applied
    uploads = lambda: _count(app, RosterUpload)  # noqa: E731
    assert cli("tick", "--at", "2026-09-03T09:59+01:00", config=console).exit_code == 0
    assert uploads() == 1
    assert cli("tick", "--at", "2026-09-03T10:01+01:00", config=console).exit_code == 0
    assert uploads() == 0
    late = post(admin, "/admin/people/upload/apply", {"upload": upload_id(preview)})
    assert late.status_code == 400 and "kept for a day" in late.get_data(as_text=True)
    assert _count(app, Staff) == 3


def _count(app, model) -> int:
    with app.extensions["signoff"].db.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_what_signoff_creates_is_readable_by_its_own_user_only(tmp_path, db_url, smtp):
    # The README's manual steps, outside systemd: SQLite in instance/, as the config's default.
    url = "sqlite:///instance/signoff.db" if db_url.startswith("sqlite") else db_url
    config = write_config(tmp_path / "setting", url, smtp.port)
    (config.parent / "staff.csv").write_text(ROSTER)
    for command in (["init"], ["staff", "import", "staff.csv"], ["tick"]):
        done = run_signoff(*command, config=config)
        assert done.returncode == 0, done.stderr
    instance = config.parent / "instance"
    made = {p.name: p for p in [instance, *instance.iterdir()]}
    assert "secret_key" in made
    assert ("signoff.db" in made) == url.startswith("sqlite")
    for path in made.values():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
