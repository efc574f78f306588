"""Email: one function renders any kind (subject, text and HTML templates); one connection per run;
and what a server's refusal means for the message and for the run.

Flask-Mail builds and sends the messages; its connection is opened here with a timeout and a
verified TLS context, which Flask-Mail itself does not set.
"""

from __future__ import annotations

import email.charset
import email.header
import email.policy
import email.utils
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

from flask import Flask, current_app
from flask_mail import Connection, Mail, Message

from .services import services

mail = Mail()


def init_app(app: Flask) -> None:
    mail.init_app(app)


def greeting_name(person: Any) -> str:
    """The name to greet someone by, on their page and in their emails ("Dear Amira"): their first
    name, or their name in full when the roster gave none. `person` has `first_name` and `name`."""
    return (person.first_name or "").strip() or person.name


def make_message(kind: str, to_name: str, to_email: str, ctx: dict[str, Any]) -> Message:
    """Render templates/emails/<kind>.subject.txt, .txt and .html into one multipart message.

    `to_name` is the To header's name, in full; the templates greet `greeting` (a person's first
    name, when the context gives it; see greeting_name), else `to_name`."""
    # An alert's own context names the people whose messages failed; it must not be overwritten.
    ctx = {"to_name": to_name, "greeting": to_name, **ctx, "setting": services().config.setting}
    env = current_app.jinja_env
    subject = " ".join(env.get_template(f"emails/{kind}.subject.txt").render(ctx).split())
    msg = _Message(subject=subject, recipients=[(to_name, to_email)],
                   body=env.get_template(f"emails/{kind}.txt").render(ctx),
                   html=env.get_template(f"emails/{kind}.html").render(ctx),
                   extra_headers={"Auto-Submitted": "auto-generated",
                                  "X-Auto-Response-Suppress": "All"})
    msg.msgId = email.utils.make_msgid(domain=_domain(services().config.mail.sender))
    return msg


def _domain(sender: str) -> str | None:
    return email.utils.parseaddr(sender)[1].rpartition("@")[2] or None


class _Message(Message):
    """Flask-Mail's message with its To and From headers made by formataddr.

    Flask-Mail RFC 2047-encodes every display name (and encodes a pre-formatted one twice), and
    Python 3.11's SMTP policy refolds an ASCII encoded-word back unquoted, so a roster name like
    "Eve Bcc: x@y" or "Smith, Jo" would garble the To header; formataddr quotes or encodes as
    needed. Flask-Mail still checks every header for CR and LF before it sends (BadHeaderError).
    """

    def _message(self):
        msg = MIMEMultipart("alternative")
        msg.attach(MIMEText(self.body, "plain", _base64_utf8()))
        msg.attach(MIMEText(self.html, "html", _base64_utf8()))
        name, addr = self.recipients[0]
        if not name:  # an address configured as "Office <office@example.org>"
            name, addr = email.utils.parseaddr(addr)
        msg["Subject"] = _subject(self.subject)
        msg["From"] = email.utils.formataddr(email.utils.parseaddr(self.sender))
        msg["To"] = email.utils.formataddr((name, addr))
        msg["Date"] = email.utils.formatdate(self.date, localtime=True)
        msg["Message-ID"] = self.msgId
        for key, value in (self.extra_headers or {}).items():
            msg[key] = value
        msg.policy = _WIRE  # smtplib sends bytes as they are: lines must end in CRLF already
        return msg


def _subject(text: str) -> str | email.header.Header:
    """The subject as it is if ASCII, else encoded for the header (Flask-Mail encodes it to a
    string that compat32 then folds after "Subject:", so that it reads with a leading space)."""
    return text if text.isascii() else email.header.Header(text, "utf-8")


# compat32 (headers written as formataddr made them), with the line ends SMTP requires.
_WIRE = email.policy.compat32.clone(linesep="\r\n")


def _base64_utf8() -> email.charset.Charset:
    """UTF-8 bodies in base64, whose lines are short whatever a template's are. (Flask-Mail sets
    the email package to send UTF-8 as it is, where an HTML line over 998 characters is refused
    by the server.)"""
    utf8 = email.charset.Charset("utf-8")
    utf8.body_encoding = email.charset.BASE64
    return utf8


class MailConnection(Connection):
    """Flask-Mail's connection with a connect/read timeout and certificate-checked TLS."""

    def configure_host(self) -> smtplib.SMTP:
        cfg = services().config.mail
        context = ssl.create_default_context()
        if cfg.use_ssl:
            host = smtplib.SMTP_SSL(cfg.server, cfg.port, timeout=cfg.timeout_seconds,
                                    context=context)
        else:
            host = smtplib.SMTP(cfg.server, cfg.port, timeout=cfg.timeout_seconds)
        if cfg.use_tls:
            host.starttls(context=context)
        if cfg.username:
            password = cfg.password
            if password is None:
                host.close()
                raise smtplib.SMTPAuthenticationError(
                    530, f"no password: the environment variable {cfg.password_env} is not set")
            host.login(cfg.username, password)
        return host


def connect() -> MailConnection:
    return MailConnection(current_app.extensions["mail"])


# --- what a refusal means ------------------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    """A server's answer that kept a message from going, as the send loop acts on it."""

    text: str  # the server's words ("5.1.1 No such user"), or what went wrong ("timed out")
    code: int | None = None  # the SMTP reply code, None for a dropped line or a timeout

    @property
    def reason(self) -> str:
        """As reported: "550 5.1.1 No such user"."""
        return f"{self.code} {self.text}" if self.code is not None else self.text

    @property
    def throttled(self) -> bool:
        """The provider says "not so fast" or "quota used up", not "not this message": the run
        stops, and nothing is spent or failed (see is_throttling)."""
        return self.code is not None and is_throttling(self.code, self.text)

    @property
    def permanent(self) -> bool:
        return self.code is not None and 500 <= self.code < 600 and not self.throttled


_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUOTA_WORDS = re.compile(r"quota|rate|limit", re.IGNORECASE)


def is_throttling(code: int, text: str) -> bool:
    """421 (service not available, closing), 451/452 with an enhanced status 4.7.x (policy) or
    4.5.x (protocol, e.g. Microsoft 365's 4.5.127 "excessive message rate"), any 4.5.127, and
    5.4.5 or 5.2.0 that speak of a quota, rate or limit (Google's and Microsoft's daily caps)."""
    if code == 421:
        return True
    enhanced = _ENHANCED.match(text)
    status = ".".join(enhanced.groups()) if enhanced else ""
    if status == "4.5.127":
        return True
    if code in (451, 452) and status.startswith(("4.7.", "4.5.")):
        return True
    return status in ("5.4.5", "5.2.0") and bool(_QUOTA_WORDS.search(text))


def refusal(exc: BaseException) -> Refusal:
    """The Refusal an exception from smtplib (or the socket under it) stands for."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        (code, text), = exc.recipients.values()
        return Refusal(_text(text), code)
    if isinstance(exc, smtplib.SMTPResponseException):
        return Refusal(_text(exc.smtp_error), exc.smtp_code)
    if isinstance(exc, socket.timeout):
        return Refusal("timed out")
    return Refusal(str(exc) or type(exc).__name__)


def _text(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:500]
