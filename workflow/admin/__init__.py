"""The admin console at /admin: who has signed, acting on it, and the evidence. Admins only.

Pages live in one module each (dashboard, people, person, schedule, evidence); they all hang off the
one blueprint below, whose guard (in auth.py) sends anyone not signed in to the sign-in page.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Flask

bp = Blueprint("admin", __name__, url_prefix="/admin")


def now() -> dt.datetime:
    """The console reads the clock here; what it asks below takes the moment as an argument."""
    return dt.datetime.now(dt.timezone.utc)


def init_app(app: Flask) -> None:
    from . import (auth, dashboard, evidence, people, person, policy_pages,  # noqa: F401 (routes)
                   schedule)

    secure = app.config["SESSION_COOKIE_SECURE"]
    app.config.update(REMEMBER_COOKIE_SECURE=secure, REMEMBER_COOKIE_HTTPONLY=True,
                      REMEMBER_COOKIE_SAMESITE="Lax")
    auth.login_manager.init_app(app)
    app.register_blueprint(bp)
