"""Signing in and out of the console, with sign-in attempts rate-limited per address and per IP.

Attempts are rows in the database, so the limit holds across waitress threads and processes. An
attempt is written as failed *before* the password is checked, so a burst of simultaneous guesses
all count; a correct password then marks it ok. Every failure gets the same message.
"""

from __future__ import annotations

import datetime as dt
import secrets
from functools import cache
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask import session as cookie
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from sqlalchemy import delete, func, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from .. import events
from ..services import services
from ..models import AdminUser, LoginAttempt
from . import accounts, bp, now
from .forms import LoginForm

WINDOW = dt.timedelta(minutes=15)
PER_ADDRESS = 5   # failures per address in WINDOW (since its last success)
PER_IP = 20       # failures per IP in WINDOW: higher, as a school office shares one address
KEEP = dt.timedelta(days=1)
SESSION_MAX = dt.timedelta(days=7)  # an admin signs in again at least this often, however busy
NOT_RIGHT = "Email or password is not right."
TOO_MANY = "Too many sign-in attempts. Please wait 15 minutes, then try again."

login_manager = LoginManager()


class SignedIn(UserMixin):
    """The signed-in admin. The cookie holds the account's session key, not its id."""

    def __init__(self, admin: AdminUser):
        self.id, self.email, self.session_key = admin.id, admin.email, admin.session_key

    def get_id(self) -> str:
        return self.session_key


@login_manager.user_loader
def _load(session_key: str) -> SignedIn | None:
    with services().db.read() as session:
        admin = session.scalars(select(AdminUser).filter_by(session_key=session_key)).first()
    return SignedIn(admin) if admin is not None else None


@cache
def _dummy_hash() -> str:
    return generate_password_hash("an unknown address still costs one hash", method="scrypt")


def begin_attempt(email: str, ip: str, moment: dt.datetime) -> int | None:
    """Count this attempt (as failed until proven otherwise); None when the limit is reached."""
    with services().db.write() as session:
        since = moment - WINDOW
        last_ok = session.scalar(select(func.max(LoginAttempt.at))
                                 .where(LoginAttempt.email == email, LoginAttempt.ok))
        address_since = max(since, last_ok) if last_ok else since
        failed = select(func.count()).where(LoginAttempt.ok.is_(False))
        by_address = session.scalar(failed.where(LoginAttempt.email == email,
                                                 LoginAttempt.at > address_since))
        by_ip = session.scalar(failed.where(LoginAttempt.ip == ip, LoginAttempt.at > since))
        if by_address >= PER_ADDRESS or by_ip >= PER_IP:
            return None
        session.execute(delete(LoginAttempt).where(LoginAttempt.at < moment - KEEP))
        attempt = LoginAttempt(at=moment, email=email, ip=ip, ok=False)
        session.add(attempt)
        session.flush()
        return attempt.id


@bp.before_request
def _signed_in_only():
    if current_user.is_authenticated and not still_fresh(now()):
        end_session()
        flash("You were signed out after a while, to keep the console safe. Please sign in again.")
    if request.endpoint == "admin.login" or current_user.is_authenticated:
        return None
    nxt = request.full_path.rstrip("?") if request.method != "POST" else None
    return redirect(url_for("admin.login", next=nxt))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a page of this console, never another site."""
    default = url_for("admin.dashboard")
    if not target:
        return default
    if len(target) > 2000 or not target.isprintable() or "\\" in target:
        return default  # control characters (a CR/LF would split the Location header), junk
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return default
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm()
    if request.method != "POST":
        form.next.data = request.args.get("next", "")
        return render_template("admin/login.html", form=form)
    if not form.validate_on_submit():
        return render_template("admin/login.html", form=form), 400
    moment = now()
    email = accounts.lookup_email(form.email.data)[:320]
    attempt = begin_attempt(email, (request.remote_addr or "unknown")[:64], moment)
    if attempt is None:
        return render_template("admin/login.html", form=form, error=TOO_MANY), 429
    with services().db.read() as session:
        admin = session.scalars(select(AdminUser).filter_by(email=email)).first()
    # An unknown address costs the same hash as a wrong password, so timing tells nothing.
    good = check_password_hash(admin.password_hash if admin else _dummy_hash(), form.password.data)
    if admin is None or not good:
        return render_template("admin/login.html", form=form, error=NOT_RIGHT), 401
    with services().db.write() as session:
        session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt).values(ok=True))
        session.execute(update(AdminUser).where(AdminUser.id == admin.id).values(last_login_at=moment))
        events.record(session, "admin_signed_in", moment, actor=email, ip=request.remote_addr)
    cookie.clear()  # a new CSRF token: none chosen or seen before signing in carries over
    login_user(SignedIn(admin))  # the cookie lasts for the browser session, and at most:
    cookie["signed_in_at"] = cookie["seen_at"] = int(moment.timestamp())
    return redirect(safe_next(form.next.data), code=303)


def still_fresh(moment: dt.datetime) -> bool:
    """Whether this admin's session may go on: used within [web] session_idle_hours of its last
    request, and signed in less than SESSION_MAX ago. Notes the request when it may."""
    idle = dt.timedelta(hours=services().config.web.session_idle_hours)
    signed_in, seen = cookie.get("signed_in_at"), cookie.get("seen_at")
    if not isinstance(signed_in, int) or not isinstance(seen, int):
        return False
    at = int(moment.timestamp())
    if at - signed_in >= SESSION_MAX.total_seconds() or at - seen >= idle.total_seconds():
        return False
    if at - seen >= 60:  # not a new cookie for every click
        cookie["seen_at"] = at
    return True


def end_session() -> None:
    logout_user()
    cookie.clear()


@bp.route("/logout", methods=["POST"])
def logout():
    with services().db.write() as session:
        # A new session key: a copy of the cookie taken before now (another browser, a stolen
        # cookie) no longer names anyone. Every other session of this admin ends too.
        session.execute(update(AdminUser).where(AdminUser.id == current_user.id)
                        .values(session_key=secrets.token_hex(32)))
        events.record(session, "admin_signed_out", now(), actor=current_user.email)
    end_session()
    flash("You are signed out.", "ok")
    return redirect(url_for("admin.login"), code=303)
