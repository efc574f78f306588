"""The demo's mail catcher: an SMTP server on loopback that keeps every email, and a small web page
to read them, so a newcomer can open a reminder and follow its link without any mail leaving the
machine. Each email is also written to an .eml file, so the mailbox survives a restart of the demo.
"""

from __future__ import annotations

import datetime as dt
import email
import email.message
import email.policy
import os
import re
import threading
from functools import cached_property
from pathlib import Path
from typing import Callable

import waitress
from aiosmtpd.controller import Controller
from flask import Flask, Response, abort, render_template
from markupsafe import Markup, escape
from waitress import wasyncore

from . import resources

# A message's id is its arrival time (UTC, to the microsecond), which also sorts it.
_ID = re.compile(r"\d{8}-\d{6}-\d{6}(-\d+)?")
_URL = re.compile(r"https?://[^\s<>\"']+")

PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
# An email's HTML is someone else's markup: `sandbox` stops scripts, forms and plugins and gives the
# page a unique origin, yet a click on a link still navigates this (top-level) page to its target.
HTML_PART_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class Stored:
    """One caught email: its raw bytes and when it arrived."""

    def __init__(self, id: str, received: dt.datetime, raw: bytes):
        self.id, self.received, self.raw = id, received, raw

    @cached_property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    def header(self, name: str) -> str:
        # A folded header keeps the space that began its continuation line; clients strip it.
        return str(self.message[name] or "").strip()

    @property
    def to(self) -> str:
        return self.header("To")

    @property
    def subject(self) -> str:
        return self.header("Subject") or "(no subject)"

    def part(self, subtype: str) -> str | None:
        body = self.message.get_body((subtype,))
        return body.get_content() if body is not None else None


class Mailbox:
    """Every caught email, in memory and as `<id>.eml` files in one folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self._messages: dict[str, Stored] = {}

    def load(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for path in self.folder.glob("*.eml"):
                if _ID.fullmatch(path.stem):
                    received = dt.datetime.strptime(path.stem[:22], "%Y%m%d-%H%M%S-%f")
                    self._messages[path.stem] = Stored(
                        path.stem, received.replace(tzinfo=dt.timezone.utc), path.read_bytes())

    def add(self, raw: bytes) -> Stored:
        received = dt.datetime.now(dt.timezone.utc)
        with self._lock:
            base = id = received.strftime("%Y%m%d-%H%M%S-%f")
            n = 0
            while id in self._messages:
                n += 1
                id = f"{base}-{n}"
            path = self.folder / f"{id}.eml"
            partial = path.with_suffix(".part")
            partial.write_bytes(raw)
            os.replace(partial, path)  # a crash never leaves half an email behind
            stored = self._messages[id] = Stored(id, received, raw)
        return stored

    def newest_first(self) -> list[Stored]:
        with self._lock:
            return sorted(self._messages.values(), key=lambda m: m.id, reverse=True)

    def get(self, id: str) -> Stored | None:
        with self._lock:
            return self._messages.get(id)


class _Handler:
    def __init__(self, mailbox: Mailbox, on_message: Callable[[Stored], None] | None):
        self.mailbox, self.on_message = mailbox, on_message

    async def handle_DATA(self, server, session, envelope):
        stored = self.mailbox.add(envelope.original_content)
        if self.on_message is not None:
            self.on_message(stored)
        return "250 Message accepted for delivery"


def linkify(text: str) -> Markup:
    """Plain text as HTML: everything escaped, web addresses turned into links."""
    out, last = [], 0
    for match in _URL.finditer(text):
        url = match.group().rstrip(".,;:!?)")
        out += [escape(text[last:match.start()]), Markup('<a href="{0}">{0}</a>').format(url)]
        last = match.start() + len(url)
    out.append(escape(text[last:]))
    return Markup("").join(out)


def create_app(mailbox: Mailbox) -> Flask:
    app = Flask(__name__, template_folder=str(resources.path("templates") / "mailcatcher"),
                static_folder=None)
    app.jinja_env.filters["linkify"] = linkify
    app.jinja_env.filters["local"] = lambda moment: moment.astimezone().strftime("%a %-d %b %H:%M:%S")

    def find(id: str) -> Stored:
        stored = mailbox.get(id) if _ID.fullmatch(id) else None
        if stored is None:
            abort(404)
        return stored

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def index():
        return render_template("index.html", messages=mailbox.newest_first())

    @app.get("/m/<id>")
    def message(id: str):
        stored = find(id)
        return render_template("message.html", m=stored, text=stored.part("plain"),
                               has_html=stored.part("html") is not None)

    @app.get("/m/<id>/html")
    def html_part(id: str):
        html = find(id).part("html")
        if html is None:
            abort(404)
        return Response(html, mimetype="text/html",
                        headers={"Content-Security-Policy": HTML_PART_CSP})

    @app.get("/m/<id>/raw")
    def raw(id: str):
        return Response(find(id).raw, mimetype="text/plain")

    @app.errorhandler(404)
    def not_found(_exc):
        return render_template("message.html", m=None), 404

    return app


class MailCatcher:
    """The SMTP server (aiosmtpd, in its own thread) and the web page (waitress, in another)."""

    def __init__(self, folder: Path, smtp_port: int, web_port: int, host: str = "127.0.0.1",
                 on_message: Callable[[Stored], None] | None = None):
        self.mailbox = Mailbox(folder)
        self.host, self.smtp_port, self.web_port = host, smtp_port, web_port
        self._smtp = Controller(_Handler(self.mailbox, on_message), hostname=host, port=smtp_port)
        self._web = None
        self._web_thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.web_port}/"

    def start(self) -> None:
        self.mailbox.load()
        self._web = waitress.create_server(create_app(self.mailbox), host=self.host,
                                           port=self.web_port, threads=2, ident="mailcatcher")
        self._web_thread = threading.Thread(target=self._web.run, name="mailcatcher-web",
                                            daemon=True)
        self._web_thread.start()
        try:
            self._smtp.start()
        except BaseException:
            self._stop_web()
            raise

    def stop(self) -> None:
        self._smtp.stop()
        self._stop_web()

    def _stop_web(self) -> None:
        if self._web is None:
            return
        server, self._web = self._web, None
        # Close the sockets from inside waitress's own loop thread, which then finds nothing left
        # to watch and returns; closing them from here could race its select().
        server.trigger.pull_trigger(lambda: (server.task_dispatcher.shutdown(),
                                             wasyncore.close_all(server._map)))
        self._web_thread.join(timeout=10)
