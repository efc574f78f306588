"""Email: one function renders any kind (subject, text and HTML templates), one connection per run.

Flask-Mail builds and sends the messages; its connection is opened here with a timeout and a
verified TLS context, which Flask-Mail itself does not set.
"""

from __future__ import annotations

import email.policy
import email.utils
import functools
import io
import secrets
import smtplib
import ssl
from email.generator import BytesGenerator
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

from flask import Flask, current_app, render_template
from flask_mail import Connection, Mail, Message, sanitize_address, sanitize_subject

from .app import services

mail = Mail()


def init_app(app: Flask) -> None:
    mail.init_app(app)


def make_message(kind: str, to_name: str, to_email: str, ctx: dict[str, Any]) -> Message:
    """Render templates/emails/<kind>.subject.txt, .txt and .html into one multipart message."""
    # An alert's own context names the person whose message failed; it must not be overwritten.
    ctx = {"to_name": to_name, **ctx, "setting": services().config.setting}
    subject = " ".join(render_template(f"emails/{kind}.subject.txt", **ctx).split())
    domain = email.utils.parseaddr(services().config.mail.sender)[1].rpartition("@")[2] or None
    msg = _Message(
        subject=subject,
        recipients=[(to_name, to_email)],
        body=render_template(f"emails/{kind}.txt", **ctx),
        html=render_template(f"emails/{kind}.html", **ctx),
        extra_headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
    )
    msg.msgId = email.utils.make_msgid(domain=domain)
    return msg


class _Message(Message):
    """Flask-Mail's message, built as multipart/alternative with every header plain ASCII.

    Flask-Mail RFC 2047-encodes every display name (and encodes a pre-formatted one twice), and
    Python 3.11's SMTP policy refolds an ASCII encoded-word back unquoted, so a roster name like
    "Eve Bcc: x@y" or "Smith, Jo" would garble the To header; formataddr quotes or encodes as
    needed. With ASCII headers and a boundary chosen here, the message flattens with a compat32
    policy that writes short headers as they are: the opening day's 5,000 emails spend their time
    on the wire, not in re-folding headers.
    """

    def _message(self) -> MIMEMultipart:
        msg = MIMEMultipart("alternative", boundary=f"=_{secrets.token_hex(16)}", policy=_WIRE)
        msg.attach(MIMEText(self.body, "plain", "utf-8", policy=_WIRE))
        msg.attach(MIMEText(self.html, "html", "utf-8", policy=_WIRE))
        name, addr = self.recipients[0]
        if not name:  # an address configured as "Office <office@example.org>"
            name, addr = email.utils.parseaddr(addr)
        msg["Subject"] = sanitize_subject(self.subject, "utf-8")
        msg["From"] = _sender(self.sender)
        msg["To"] = email.utils.formataddr((name, addr))
        msg["Date"] = email.utils.formatdate(self.date, localtime=True)
        msg["Message-ID"] = self.msgId
        for key, value in (self.extra_headers or {}).items():
            msg[key] = value
        return msg

    def as_bytes(self) -> bytes:
        out = io.BytesIO()
        BytesGenerator(out, mangle_from_=False, policy=_WIRE).flatten(self._message())
        return out.getvalue()


@functools.lru_cache(maxsize=8)
def _sender(sender: str) -> str:
    return sanitize_address(sender, "utf-8")


class _Wire(email.policy.Compat32):
    """compat32 on the wire (CRLF), writing a short ASCII header as it is instead of through
    email.header.Header, which gives the same bytes for it at many times the cost."""

    def fold_binary(self, name: str, value) -> bytes:
        if (isinstance(value, str) and value.isascii() and len(name) + len(value) < 76
                and "\r" not in value and "\n" not in value):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_WIRE = _Wire(linesep="\r\n")


class MailConnection(Connection):
    """Flask-Mail's connection with a connect/read timeout and certificate-checked TLS."""

    def configure_host(self) -> smtplib.SMTP:
        cfg = services().config.mail
        timeout = cfg.timeout_seconds
        context = ssl.create_default_context()
        if cfg.use_ssl:
            host = smtplib.SMTP_SSL(cfg.server, cfg.port, timeout=timeout, context=context)
        else:
            host = smtplib.SMTP(cfg.server, cfg.port, timeout=timeout)
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
