"""Email: one function renders any kind (subject, text and HTML templates), one connection per run.

Flask-Mail builds and sends the messages; its connection is opened here with a timeout and a
verified TLS context, which Flask-Mail itself does not set.
"""

from __future__ import annotations

import base64
import email.message
import email.policy
import email.utils
import functools
import io
import re
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from email.generator import BytesGenerator
from typing import Any, Callable

from flask import Flask, current_app
from flask_mail import (BadHeaderError, Connection, Mail, Message, sanitize_address,
                        sanitize_subject)

from .app import services

mail = Mail()


def init_app(app: Flask) -> None:
    mail.init_app(app)


def make_message(kind: str, to_name: str, to_email: str, ctx: dict[str, Any]) -> Message:
    """Render templates/emails/<kind>.subject.txt, .txt and .html into one multipart message."""
    subject, body, html = _render(kind, to_name, ctx)
    msg = _Message(subject=subject, recipients=[(to_name, to_email)], body=body, html=html,
                   extra_headers=_EXTRA_HEADERS)
    msg.msgId = _message_id()
    return msg


def make_wire(kind: str, to_name: str, to_email: str, ctx: dict[str, Any]) -> Wire:
    """What Flask-Mail's Connection.send() would put on the wire for make_message(), worked out
    ahead of sending (a batch is composed in one process and sent from another), and without
    Flask-Mail's Message: composing thousands on the opening day, its constructor's look-up of
    this host's name, for a Message-ID replaced anyway, costs more than the headers."""
    subject, body, html = _render(kind, to_name, ctx)
    sender = services().config.mail.sender
    if any(_has_newline(text) for text in (subject, to_name, to_email, sender)):
        raise BadHeaderError
    message_id = _message_id()
    data = _flatten(_mime(subject, sender, (to_name, to_email), body, html, message_id, None,
                          _EXTRA_HEADERS))
    return Wire(_envelope(_sender_address(sender)), _envelope(to_email), data, message_id)


_EXTRA_HEADERS = {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"}


def _render(kind: str, to_name: str, ctx: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text, HTML) of an email of `kind`."""
    # An alert's own context names the person whose message failed; it must not be overwritten.
    ctx = {"to_name": to_name, **ctx, "setting": services().config.setting}
    # The app's Jinja environment (autoescaping .html), without render_template's request
    # context processors and signals, which no email uses: thousands are rendered on opening day.
    env = current_app.jinja_env
    subject = " ".join(env.get_template(f"emails/{kind}.subject.txt").render(ctx).split())
    return (subject, env.get_template(f"emails/{kind}.txt").render(ctx),
            env.get_template(f"emails/{kind}.html").render(ctx))


def _message_id() -> str:
    return email.utils.make_msgid(domain=_domain(services().config.mail.sender))


def _has_newline(text: str) -> bool:
    return "\r" in text or "\n" in text


@dataclass(frozen=True)
class Wire:
    """A message as it goes to the server: its envelope and its bytes."""

    envelope_from: str
    envelope_to: str
    data: bytes
    message_id: str


def send(conn: Connection, wire: Wire, meanwhile: Callable[[], None] | None = None,
         before_data: Callable[[], None] | None = None) -> None:
    """Send one message. `meanwhile`, if given, runs once while the server reads this message's
    MAIL command (before its reply is read); `before_data` runs before its DATA command is sent.
    Each runs before this returns if the message never got that far. The caller starts storing
    the previous message's outcome in the one, in time the wire would otherwise idle, and waits
    for it in the other: it is stored before this message can be taken."""
    host = conn.host
    host.meanwhile, host.before_data = meanwhile, before_data
    try:
        host.sendmail(wire.envelope_from, [wire.envelope_to], wire.data)
    finally:
        _run_pending(host, "meanwhile")
        _run_pending(host, "before_data")


class _Message(Message):
    """Flask-Mail's message (for Connection.send()), made as make_wire() makes its bytes."""

    def _message(self) -> email.message.Message:
        return _mime(self.subject, self.sender, self.recipients[0], self.body, self.html,
                     self.msgId, self.date, self.extra_headers or {})

    def as_bytes(self) -> bytes:
        return _flatten(self._message())


def _mime(subject: str, sender: str, to: tuple[str, str], body: str, html: str, message_id: str,
          date: float | None, extra_headers: dict[str, str]) -> email.message.Message:
    """A multipart/alternative message with every header plain ASCII.

    Flask-Mail RFC 2047-encodes every display name (and encodes a pre-formatted one twice), and
    Python 3.11's SMTP policy refolds an ASCII encoded-word back unquoted, so a roster name like
    "Eve Bcc: x@y" or "Smith, Jo" would garble the To header; formataddr quotes or encodes as
    needed. With ASCII headers and a boundary chosen here, the message flattens with a compat32
    policy that writes short headers as they are: the opening day's 5,000 emails spend their time
    on the wire, not in re-folding headers.
    """
    boundary = f"=_{secrets.token_hex(12)}"
    msg = email.message.Message(policy=_WIRE)
    msg["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    msg["MIME-Version"] = "1.0"
    name, addr = to
    if not name:  # an address configured as "Office <office@example.org>"
        name, addr = email.utils.parseaddr(addr)
    msg["Subject"] = sanitize_subject(subject, "utf-8")
    msg["From"] = _from_header(sender)
    msg["To"] = email.utils.formataddr((name, addr))
    msg["Date"] = email.utils.formatdate(date, localtime=True)
    msg["Message-ID"] = message_id
    for key, value in extra_headers.items():
        msg[key] = value
    # The two parts, already in wire form: the generator writes a string payload as it is.
    msg.set_payload(_alternatives(boundary, [("plain", body), ("html", html)]))
    return msg


def _flatten(msg: email.message.Message) -> bytes:
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_WIRE).flatten(msg)
    return out.getvalue()


def _alternatives(boundary: str, parts: list[tuple[str, str]]) -> str:
    """The body of a multipart/alternative: each text part UTF-8 and base64, lines CRLF.

    The same bytes MIMEText(text, subtype, "utf-8") parts would flatten to, written directly: the
    email package's per-part charset handling and line-by-line generator cost more than the
    rest of composing an email, thousands of times on the opening day.
    """
    out = []
    for subtype, text in parts:
        encoded = base64.encodebytes(text.encode("utf-8")).decode("ascii")
        out.append(f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
                   f"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                   + encoded.replace("\n", "\r\n"))
    out.append(f"--{boundary}--\r\n")
    return "".join(out)


@functools.lru_cache(maxsize=8)
def _sender_address(sender: str) -> str:
    return email.utils.parseaddr(sender)[1]


@functools.lru_cache(maxsize=8)
def _from_header(sender: str) -> str:
    """The From header: the configured name quoted or encoded only where it needs to be."""
    return email.utils.formataddr(email.utils.parseaddr(sender))


@functools.lru_cache(maxsize=8)
def _domain(sender: str) -> str | None:
    return email.utils.parseaddr(sender)[1].rpartition("@")[2] or None


def _envelope(address: str) -> str:
    """The RCPT TO address: as it is, or as Flask-Mail encodes an internationalised one."""
    if address.isascii():
        return address
    return email.utils.parseaddr(sanitize_address(("", address), "utf-8"))[1]


class _Wire(email.policy.Compat32):
    """compat32 on the wire (CRLF), writing a short ASCII header as it is instead of through
    email.header.Header, which gives the same bytes for it at many times the cost."""

    def fold_binary(self, name: str, value) -> bytes:
        if (isinstance(value, str) and value.isascii() and len(name) + len(value) < 76
                and "\r" not in value and "\n" not in value):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_WIRE = _Wire(linesep="\r\n")


def _run_pending(host, hook: str) -> None:
    """Run the host's pending `meanwhile` or `before_data` (see send()), once."""
    work = getattr(host, hook, None)
    setattr(host, hook, None)
    if work is not None:
        work()


class _Meanwhile:
    """An SMTP client that runs a pending `meanwhile` (see send()) before it reads a reply, when
    the command has been written and the server is at work on it, and a pending `before_data`
    before it sends DATA. One command at a time, as ever: nothing is pipelined.

    It also skips two steps of smtplib's that cost a third of the client's own work per message
    where they can change nothing: parsing a plain address to put it in angle brackets, and a
    regular expression over the whole message to double the dots that start no line of it."""

    meanwhile: Callable[[], None] | None = None
    before_data: Callable[[], None] | None = None

    def getreply(self):
        if self.meanwhile is not None:  # checked here: four replies a message
            _run_pending(self, "meanwhile")
        return super().getreply()

    def mail(self, sender, options=()):
        if any(option.lower() == "smtputf8" for option in options):
            return super().mail(sender, options)  # it changes the command encoding: smtplib's way
        self.putcmd("mail", f"FROM:{quoted(sender)}{self._options(options)}")
        return self.getreply()

    def rcpt(self, recip, options=()):
        self.putcmd("rcpt", f"TO:{quoted(recip)}{self._options(options)}")
        return self.getreply()

    def _options(self, options) -> str:
        """ESMTP options (SIZE=…) as smtplib adds them to MAIL and RCPT."""
        return " " + " ".join(options) if options and self.does_esmtp else ""

    def data(self, msg):
        if self.before_data is not None:
            _run_pending(self, "before_data")
        if not isinstance(msg, bytes) or msg.startswith(b".") or b"\n." in msg:
            return super().data(msg)  # a line to dot-stuff (or text to encode): smtplib's way
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        self.send(msg + (b".\r\n" if msg.endswith(b"\r\n") else b"\r\n.\r\n"))
        return self.getreply()


# An address made only of the characters of an unquoted local part and a domain name.
_PLAIN_ADDRESS = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
                            r"@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*", re.ASCII)


def quoted(address: str) -> str:
    """smtplib.quoteaddr(address): the address in angle brackets, as MAIL and RCPT send it. A
    plain address is that without being parsed (which costs more than sending it does)."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return _parsed_and_quoted(address)


@functools.lru_cache(maxsize=16)  # the sender, as configured with its name: every message's MAIL
def _parsed_and_quoted(address: str) -> str:
    return smtplib.quoteaddr(address)


class _SMTP(_Meanwhile, smtplib.SMTP):
    pass


class _SMTP_SSL(_Meanwhile, smtplib.SMTP_SSL):
    pass


class MailConnection(Connection):
    """Flask-Mail's connection with a connect/read timeout and certificate-checked TLS."""

    def configure_host(self) -> smtplib.SMTP:
        cfg = services().config.mail
        timeout = cfg.timeout_seconds
        context = ssl.create_default_context()
        if cfg.use_ssl:
            host = _SMTP_SSL(cfg.server, cfg.port, timeout=timeout, context=context)
        else:
            host = _SMTP(cfg.server, cfg.port, timeout=timeout)
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
