"""Helpers for the admin console tests: an admin account, signing in, and posting forms with the
CSRF token a real browser would have."""

from __future__ import annotations

import io
import re

import pytest
import time_machine

PASSWORD = "correct horse battery staple"
ADMIN = "office@example.org"


def csrf(client) -> str:
    """The session's token, from the sign-in page (or the dashboard once signed in)."""
    page = client.get("/admin/login", follow_redirects=True).get_data(as_text=True)
    found = re.search(r'name="(?:[\w-]*)csrf_token"[^>]*value="([^"]+)"', page) or \
        re.search(r'value="([^"]+)"[^>]*name="(?:[\w-]*)csrf_token"', page)
    assert found, page
    return found.group(1)


def post(client, url: str, data: dict | None = None, prefix: str = "", **kw):
    """POST like the browser does: with the session's CSRF token under the form's field name."""
    token = csrf(client)
    fields = {f"{prefix}-{k}" if prefix else k: v for k, v in (data or {}).items()}
    fields[f"{prefix}-csrf_token" if prefix else "csrf_token"] = token
    return client.post(url, data=fields, **kw)


def upload(client, content: bytes, name: str = "staff.csv"):
    """Upload a roster CSV in the console, as its file input does."""
    return client.post("/admin/people/upload", data={
        "csrf_token": csrf(client), "file": (io.BytesIO(content), name)},
        content_type="multipart/form-data")


def upload_id(preview) -> str:
    """The upload an "Apply these changes" button names."""
    return preview.get_data(as_text=True).split('name="upload" type="hidden" value="')[1] \
        .split('"')[0]


def sign_in(client, email: str = ADMIN, password: str = PASSWORD):
    return post(client, "/admin/login", {"email": email, "password": password})


@pytest.fixture
def console(setup, cli):
    """A configured setting with an admin account, and a way to make its app."""
    config = setup()
    result = cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    return config


@pytest.fixture
def app(console):
    from workflow import config as config_mod
    from workflow.app import create_app

    application = create_app(config_mod.load(console))
    application.config["TESTING"] = False  # keep CSRF and Flask-Login as in production
    yield application
    application.extensions["signoff"].db.dispose()


STORY = "2026-09-02 10:00"  # the cycle opened on Tue 1 Sep 2026; first reminders went then


@pytest.fixture
def clock():
    """The console's story happens on 2 Sep 2026, with the clock held still."""
    from conftest import at

    with time_machine.travel(at(STORY), tick=False) as traveller:
        yield traveller


@pytest.fixture
def admin(app, clock, cli, console):
    """A signed-in admin's client, after the cycle's first tick sent everyone a reminder."""
    result = cli("tick", "--at", "2026-09-01T09:00+01:00", config=console)
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert sign_in(client).status_code == 303
    return client


def staff_id(app, email: str) -> int:
    from sqlalchemy import select

    from workflow.models import Staff

    with app.extensions["signoff"].db.read() as session:
        return session.scalar(select(Staff.id).where(Staff.email == email))
