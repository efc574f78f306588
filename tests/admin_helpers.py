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


def previewed(page) -> str:
    """The fingerprint a preview page carries for its Save button."""
    found = re.search(r'name="previewed" type="hidden" value="([0-9a-f]{64})"',
                      page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)
    return found.group(1)


def save_policy(client, url: str, fields: dict):
    """Fill in the policy form at `url` (/admin/policies/new, or a policy's page), preview the
    change and save it, as the office manager does: (the preview page, the saved response)."""
    preview = post(client, url, {**fields, "action": "preview"})
    assert preview.status_code == 200, preview.get_data(as_text=True)
    saved = post(client, url, {**fields, "action": "save", "previewed": previewed(preview)})
    return preview, saved


def policy_fields(client, policy_id: int) -> dict:
    """The policy form's fields as the edit page shows them."""
    import html as html_mod

    page = client.get(f"/admin/policies/{policy_id}").get_data(as_text=True)
    fields = {}
    for name in ("title", "reminder_note", "audience", "annual_open", "send_time",
                 "reminder_after_days", "escalate_after_days"):
        found = re.search(rf'<input[^>]*name="{name}"[^>]*>', page)
        value = re.search(r'value="([^"]*)"', found.group(0)) if found else None
        fields[name] = html_mod.unescape(value.group(1)) if value else ""
    for name in ("text", "statements"):
        found = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
        # As a browser reads it: the line break WTForms writes after <textarea> is not content.
        value = html_mod.unescape(found.group(1)) if found else ""
        fields[name] = value.removeprefix("\r\n").removeprefix("\n")
    chosen = re.search(r'<select[^>]*name="working_days_only".*?</select>', page, re.S)
    picked = re.search(r'<option selected value="([^"]*)"|<option value="([^"]*)" selected',
                       chosen.group(0)) if chosen else None
    fields["working_days_only"] = (picked.group(1) or picked.group(2) or "") if picked else ""
    return fields
