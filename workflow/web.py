"""What every page shares: security headers, friendly error pages, the health check."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from .services import services

log = logging.getLogger("signoff.web")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    app.after_request(_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/", "index", index)
    app.context_processor(lambda: {"setting_name": services().config.setting.name})


def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Personal pages must not sit in shared caches or the back/forward history of a shared phone.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def healthz():
    try:
        with services().db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        log.exception("health check: database did not answer")
        return {"status": "error", "database": "unavailable"}, 503
    return {"status": "ok", "database": "ok"}


def index():
    return render_template("message.html", title=services().config.setting.name,
                           text="Your personal link is in the reminder email you were sent. "
                                "There is nothing to sign in to.")


_MESSAGES = {
    404: ("Link not recognised", "This link is not one we know. Please check you copied the whole "
          "link from your email, or use the link in your most recent email."),
    405: ("Not allowed", "That is not something this page can do."),
    413: ("Too large", "That upload is too large."),
}


def _http_error(exc: HTTPException):
    title, body = _MESSAGES.get(exc.code, (exc.name, exc.description))
    return render_template("message.html", title=title, text=body), exc.code


def _csrf_error(exc: CSRFError):
    return render_template("message.html", title="Please try again",
                           text="The form had expired or came from somewhere else. Go back, reload "
                                "the page and submit it again."), 400


def _unexpected(exc: Exception):
    log.exception("unexpected error")
    return render_template("message.html", title="Something went wrong",
                           text="Sorry, something went wrong on our side. Nothing was recorded; "
                                "please try again in a few minutes."), 500
