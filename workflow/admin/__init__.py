"""The admin console at /admin: who has signed, acting on it, and the evidence. Admins only.

Pages live in one module each (dashboard, people, person, schedule, evidence); they all hang off the
one blueprint below, whose guard (in auth.py) sends anyone not signed in to the sign-in page.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Flask, abort, request
from sqlalchemy.orm import Session

from ..models import Staff
from ..policies import setting_id

bp = Blueprint("admin", __name__, url_prefix="/admin")


def now() -> dt.datetime:
    """The console reads the clock here; what it asks below takes the moment as an argument."""
    return dt.datetime.now(dt.timezone.utc)


def paging(count: int, per_page: int) -> tuple[int, int]:
    """(the page asked for in ?page=, at most the last; how many pages) for `count` items: a
    page that is not a whole number from 1 is the first."""
    asked = request.args.get("page", "1")
    page = int(asked) if asked.isdigit() and 0 < len(asked) < 7 and int(asked) > 0 else 1
    pages = max(1, -(-count // per_page))
    return min(page, pages), pages


def person_or_404(session: Session, staff_id: int) -> Staff:
    """Someone on the setting's roster, by the id a URL names; 404 for anyone else."""
    person = session.get(Staff, staff_id)
    if person is None or person.setting_id != setting_id(session):
        abort(404)
    return person


def init_app(app: Flask) -> None:
    from . import (auth, dashboard, evidence, people, person, policy_pages,  # noqa: F401 (routes)
                   schedule)

    secure = app.config["SESSION_COOKIE_SECURE"]
    app.config.update(REMEMBER_COOKIE_SECURE=secure, REMEMBER_COOKIE_HTTPONLY=True,
                      REMEMBER_COOKIE_SAMESITE="Lax")
    auth.login_manager.init_app(app)
    app.register_blueprint(bp)
