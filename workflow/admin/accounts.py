"""Admin accounts, for `signoff admin add|list|remove`: addresses and scrypt password hashes."""

from __future__ import annotations

import datetime as dt
import secrets

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from .. import events
from ..services import Services
from ..models import AdminUser

MIN_PASSWORD = 12


class AccountError(Exception):
    """Bad input for an admin account; the message says what to fix."""


def normal_email(value: str) -> str:
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AccountError(f"{value!r} is not a valid email address ({exc})") from None


def lookup_email(value: str) -> str:
    """An address typed at sign-in, in the form `add` stored it. Not an address at all: only
    trimmed and lower-cased (it matches no admin, and still counts as an attempt)."""
    try:
        return normal_email(value)
    except AccountError:
        return value.strip().lower()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters long")
    if password != password.strip() or "\n" in password:
        raise AccountError("the password must not start or end with spaces or contain a line break")


def add(svc: Services, email: str, password: str, now: dt.datetime) -> bool:
    """Add an admin, or set a new password for an existing one (True when added)."""
    email = normal_email(email)
    check_password(password)
    hashed = generate_password_hash(password, method="scrypt")
    with svc.db.write() as session:
        admin = session.scalars(select(AdminUser).filter_by(email=email)).first()
        if admin is None:
            session.add(AdminUser(email=email, password_hash=hashed,
                                  session_key=secrets.token_hex(32), created_at=now))
            events.record(session, "admin_added", now, actor="cli", email=email)
            return True
        admin.password_hash = hashed
        admin.session_key = secrets.token_hex(32)  # signs out the old password's sessions
        events.record(session, "admin_password_changed", now, actor="cli", email=email)
        return False


def remove(svc: Services, email: str, now: dt.datetime) -> str:
    """Remove an admin; returns their address, normalised as `add` stored it."""
    email = normal_email(email)
    with svc.db.write() as session:
        admin = session.scalars(select(AdminUser).filter_by(email=email)).first()
        if admin is None:
            raise AccountError(f"{email} is not an admin (see `signoff admin list`)")
        session.delete(admin)
        events.record(session, "admin_removed", now, actor="cli", email=email)
    return email


def listing(svc: Services) -> list[AdminUser]:
    with svc.db.read() as session:
        return list(session.scalars(select(AdminUser).order_by(AdminUser.email)))
