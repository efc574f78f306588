"""The console's door: admin accounts from the CLI, sign-in with a generic error and a rate limit,
CSRF on every form, sessions that end on sign-out or removal. Flask test client on both databases."""

from __future__ import annotations

import pytest

import dataclasses
import datetime as dt

import time_machine
from sqlalchemy import func, select

from admin_helpers import ADMIN, PASSWORD, app, console, csrf, post, sign_in  # noqa: F401
from conftest import at
from workflow.models import AdminUser, Event, LoginAttempt, Request


def test_admin_accounts_from_the_cli(setup, cli):
    config = setup()
    added = cli("admin", "add", "Office@Example.org", config=config,
                input=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    assert "office@example.org can now sign in" in added.output
    assert PASSWORD not in added.output
    listed = cli("admin", "list", config=config)
    assert "office@example.org  last signed in: never" in listed.output

    short = cli("admin", "add", "b@example.org", "--password-stdin", config=config, input="short\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    bad = cli("admin", "add", "not-an-address", "--password-stdin", config=config,
              input=PASSWORD + "\n")
    assert bad.exit_code == 2 and "not a valid email address" in bad.output
    missing = cli("admin", "remove", "nobody@example.org", config=config)
    assert missing.exit_code == 2 and "is not an admin" in missing.output
    assert cli("admin", "list", config=config).output.count("last signed in") == 1

    removed = cli("admin", "remove", "office@example.org", config=config)
    assert removed.exit_code == 0
    assert "no admins yet" in cli("admin", "list", config=config).output


def _one_line(result, needle: str) -> None:
    """Exit 2 with one `signoff: …` line naming the problem, not click's Usage/Try/Error block."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("signoff: ") and needle in lines[0], result.stderr
    assert "Usage:" not in result.output and "Try " not in result.output


def test_account_mistakes_are_one_line(setup, cli):
    config = setup()
    _one_line(cli("admin", "add", "b@example.org", "--password-stdin", config=config,
                  input="short\n"), "at least 12 characters")
    _one_line(cli("admin", "add", "not-an-address", "--password-stdin", config=config,
                  input=PASSWORD + "\n"), "'not-an-address' is not a valid email address")
    _one_line(cli("admin", "remove", "nobody@example.org", config=config),
              "nobody@example.org is not an admin")
    _one_line(cli("admin", "remove", "not-an-address", config=config), "not a valid email address")


def test_remove_finds_the_address_as_add_stored_it(setup, cli):
    config = setup()
    added = cli("admin", "add", "Office@Bücher.example", "--password-stdin", config=config,
                input=PASSWORD + "\n")
    assert added.exit_code == 0 and "office@bücher.example can now sign in" in added.output
    # The same address, typed as its ASCII (IDNA) form and with stray spaces.
    removed = cli("admin", "remove", " Office@xn--bcher-kva.example ", config=config)
    assert removed.exit_code == 0, removed.output
    assert removed.output.strip() == "office@bücher.example removed"
    assert cli("admin", "list", config=config).output.count("bücher") == 0


def test_sign_in_finds_the_address_as_add_stored_it(app, cli, console):
    cli("admin", "add", "Office@Bücher.example", "--password-stdin", config=console,
        input=PASSWORD + "\n")
    assert sign_in(app.test_client(), email="office@xn--bcher-kva.example").status_code == 303


def test_password_is_stored_as_scrypt_hash(app):
    with app.extensions["signoff"].db.read() as session:
        admin = session.scalars(select(AdminUser)).one()
    assert admin.password_hash.startswith("scrypt:") and PASSWORD not in admin.password_hash


def test_every_admin_page_needs_a_signed_in_admin(app):
    client = app.test_client()
    for url in ("/admin/", "/admin/people", "/admin/people/1", "/admin/schedule", "/admin/evidence",
                "/admin/evidence/1", "/admin/evidence/1/export.csv"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/admin/login?next=")
    # A POST with a valid CSRF token but no sign-in changes nothing.
    response = post(client, "/admin/people/1/social-media/exempt", {"reason": "leave"},
                    prefix="social-media-exempt")
    assert response.status_code == 302
    with app.extensions["signoff"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(Request)
                              .where(Request.exempt_at.is_not(None))) == 0


def test_sign_in_then_back_to_the_page_asked_for(app):
    client = app.test_client()
    assert "next=/admin/schedule" in client.get("/admin/schedule").headers["Location"]
    page = client.get("/admin/login?next=/admin/schedule").get_data(as_text=True)
    assert 'value="/admin/schedule"' in page
    response = post(client, "/admin/login", {"email": ADMIN, "password": PASSWORD,
                                             "next": "/admin/schedule"})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/schedule"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/admin/schedule").status_code == 200


def test_next_never_leaves_the_console(app):
    client = app.test_client()
    for target in ("https://evil.example/", "//evil.example/admin", "/c/x", "/\\evil.example"):
        response = post(client, "/admin/login", {"email": ADMIN, "password": PASSWORD,
                                                 "next": target})
        assert response.headers["Location"] == "/admin/", target
        post(client, "/admin/logout")


def test_wrong_password_and_unknown_address_get_the_same_generic_error(app):
    client = app.test_client()
    wrong = sign_in(client, password="not the password at all")
    unknown = sign_in(client, email="stranger@example.org")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Email or password is not right." in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    empty = post(client, "/admin/login", {"email": "", "password": ""})
    assert empty.status_code == 400 and "Enter your email address." in empty.get_data(as_text=True)


def test_sign_in_is_rate_limited_per_address_then_recovers(app):
    client = app.test_client()
    with time_machine.travel(at("2026-10-05 10:00"), tick=False) as clock:
        for _ in range(5):
            assert sign_in(client, password="wrong password guess").status_code == 401
        blocked = sign_in(client)  # even the right password waits
        assert blocked.status_code == 429
        assert "Too many sign-in attempts" in blocked.get_data(as_text=True)
        assert client.get("/admin/").status_code == 302
        clock.shift(dt.timedelta(minutes=16))
        assert sign_in(client).status_code == 303
        assert client.get("/admin/").status_code == 200


@pytest.mark.slow
def test_sign_in_is_rate_limited_per_ip(app, cli, console):
    client = app.test_client()
    with time_machine.travel(at("2026-10-05 10:00"), tick=False):
        for n in range(20):
            response = client.post("/admin/login", data={
                "email": f"guess{n}@example.org", "password": "wrong password guess",
                "csrf_token": csrf(client)}, environ_base={"REMOTE_ADDR": "203.0.113.9"})
            assert response.status_code == 401
        blocked = client.post("/admin/login", data={
            "email": ADMIN, "password": PASSWORD, "csrf_token": csrf(client)},
            environ_base={"REMOTE_ADDR": "203.0.113.9"})
        assert blocked.status_code == 429
        # Another computer is not held up by this one's guessing.
        elsewhere = client.post("/admin/login", data={
            "email": ADMIN, "password": PASSWORD, "csrf_token": csrf(client)},
            environ_base={"REMOTE_ADDR": "198.51.100.7"})
        assert elsewhere.status_code == 303
    with app.extensions["signoff"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 21


def test_forms_without_a_csrf_token_are_refused(app):
    client = app.test_client()
    response = client.post("/admin/login", data={"email": ADMIN, "password": PASSWORD})
    assert response.status_code == 400 and "Please try again" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    assert sign_in(client).status_code == 303
    forged = client.post("/admin/people/1/social-media/exempt",
                         data={"social-media-exempt-reason": "leave",
                               "social-media-exempt-csrf_token": "forged"})
    assert forged.status_code == 400
    with app.extensions["signoff"].db.read() as session:
        assert session.scalar(select(func.count()).select_from(Request)
                              .where(Request.exempt_at.is_not(None))) == 0


def test_sign_out_is_a_post_and_ends_the_session(app):
    client = app.test_client()
    sign_in(client)
    assert client.get("/admin/logout").status_code == 405
    assert client.get("/admin/").status_code == 200
    assert post(client, "/admin/logout").status_code == 303
    assert client.get("/admin/").status_code == 302
    with app.extensions["signoff"].db.read() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.actor == ADMIN)))
    assert kinds == ["admin_signed_in", "admin_signed_out"]


def test_sign_out_ends_a_copy_of_the_session_cookie_too(app):
    client = app.test_client()
    sign_in(client)
    copied = client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/admin/").status_code == 200  # the copy works while the admin is signed in
    with app.extensions["signoff"].db.read() as session:
        key_before = session.scalars(select(AdminUser.session_key)).one()
    assert post(client, "/admin/logout").status_code == 303
    assert thief.get("/admin/").status_code == 302
    assert thief.get("/admin/").headers["Location"].startswith("/admin/login")
    with app.extensions["signoff"].db.read() as session:
        assert session.scalars(select(AdminUser.session_key)).one() != key_before
    # Signing in again works, with a fresh session.
    assert sign_in(client).status_code == 303 and client.get("/admin/").status_code == 200
    assert thief.get("/admin/").status_code == 302


def test_removing_an_admin_or_changing_the_password_ends_their_sessions(app, cli, console):
    client = app.test_client()
    sign_in(client)
    assert client.get("/admin/").status_code == 200
    cli("admin", "add", ADMIN, "--password-stdin", config=console, input="a brand new password\n")
    assert client.get("/admin/").status_code == 302
    assert sign_in(client, password="a brand new password").status_code == 303
    assert cli("admin", "remove", ADMIN, config=console).exit_code == 0
    assert client.get("/admin/").status_code == 302


def test_cookies_are_secure_when_the_site_is_https(console):
    from workflow import config as config_mod
    from workflow.app import create_app

    config = config_mod.load(console)
    config = dataclasses.replace(config, setting=dataclasses.replace(
        config.setting, base_url="https://signoff.example.org"))
    application = create_app(config)
    try:
        assert application.config["SESSION_COOKIE_SECURE"] is True
        assert application.config["REMEMBER_COOKIE_SECURE"] is True
        client = application.test_client()
        response = sign_in(client)
        assert "Secure" in response.headers["Set-Cookie"]
    finally:
        application.extensions["signoff"].db.dispose()
