"""What every page shares: security headers, friendly error pages, the health check."""

from __future__ import annotations

import logging

from flask import Flask, abort, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.routing import IntegerConverter

from .services import services

log = logging.getLogger("signoff.web")

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


class RowId(IntegerConverter):
    """`<id:…>` in a route: a row id, so anything past a 32-bit integer is simply not found."""

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=2**31 - 1)


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = RowId
    app.before_request(_refuse_nul)
    app.after_request(_headers)
    if app.config["SESSION_COOKIE_SECURE"]:  # base_url is https
        app.after_request(_hsts)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SecurityError, _unknown_host)
    app.register_error_handler(Exception, _unexpected)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/", "index", index)
    # Every page has the setting's name, and its contact line (base.html shows that on the pages
    # staff see, the error pages among them: those mark themselves staff_page).
    app.context_processor(lambda: {"setting_name": services().config.setting.name,
                                   "contact": services().config.setting.contact})


def _refuse_nul():
    """A NUL byte is never in a real form or link; PostgreSQL cannot even store one."""
    values = [request.path, *request.args.keys(), *request.args.values()]
    if request.method == "POST":
        values += [*request.form.keys(), *request.form.values()]
    if any("\x00" in v for v in values):
        abort(400)


def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Frame-Options"] = "DENY"
    # Flask-WTF checks a form posted over https came from this site by its Referer: send it to
    # ourselves only (a personal link's path never leaves the site).
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Personal pages must not sit in shared caches or the back/forward history of a shared phone.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _hsts(response):
    response.headers["Strict-Transport-Security"] = "max-age=31536000"  # a year
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
    400: ("Not understood", "That request was not one this site can answer. Please go back and "
          "try again."),
    405: ("Not allowed", "That is not something this page can do."),
    413: ("Too large", "That upload is too large."),
}


def _http_error(exc: HTTPException):
    title, body = _MESSAGES.get(exc.code, (exc.name, exc.description))
    response = make_response(render_template("message.html", title=title, text=body), exc.code)
    for name, value in exc.get_headers():  # e.g. the Allow of a 405
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _unknown_host(exc: SecurityError):
    """A Host header that is not base_url's (nor loopback): no page, as no link can be built."""
    return "This site is not served under that name.\n", 400, {"Content-Type": "text/plain"}


def _csrf_error(exc: CSRFError):
    return render_template("message.html", title="Please try again",
                           text="The form had expired or came from somewhere else. Go back, reload "
                                "the page and submit it again."), 400


def _unexpected(exc: Exception):
    log.exception("unexpected error")
    return render_template("message.html", title="Something went wrong",
                           text="Sorry, something went wrong on our side. Nothing was recorded; "
                                "please try again in a few minutes."), 500
