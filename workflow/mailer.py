"""Email: one function renders any kind (subject, text and HTML templates), one connection per run.

Flask-Mail builds and sends the messages; its connection is opened here with a timeout and a
verified TLS context, which Flask-Mail itself does not set.
"""

from __future__ import annotations

import email.policy
import email.utils
import io
import smtplib
import ssl
from email.generator import BytesGenerator
from typing import Any

from flask import Flask, current_app, render_template
from flask_mail import Connection, Mail, Message

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
    """Flask-Mail's message with a safely written To header, flattened quickly.

    Flask-Mail RFC 2047-encodes every display name (and encodes a pre-formatted one twice), and
    Python 3.11's SMTP policy refolds an ASCII encoded-word back unquoted, so a roster name like
    "Eve Bcc: x@y" or "Smith, Jo" would garble the To header. formataddr quotes or encodes as
    needed, and every header is then plain ASCII, so the message is flattened with the compat32
    generator: the same bytes on the wire, at a quarter of the SMTP policy's cost per message.
    """

    def _message(self):
        msg = super()._message()
        name, addr = self.recipients[0]
        if not name:  # an address configured as "Office <office@example.org>"
            name, addr = email.utils.parseaddr(addr)
        # Flask-Mail ends by switching to the SMTP policy, which would decode the encoded-word again.
        msg.policy = _WIRE
        del msg["To"]
        msg["To"] = email.utils.formataddr((name, addr))
        return msg

    def as_bytes(self) -> bytes:
        out = io.BytesIO()
        BytesGenerator(out, mangle_from_=False, policy=_WIRE).flatten(self._message())
        return out.getvalue()


_WIRE = email.policy.compat32.clone(linesep="\r\n")


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
