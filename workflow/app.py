"""The Flask application factory and the services every part of signoff shares."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from . import resources
from .config import Config
from .db import Database
from .services import Services

csrf = CSRFProtect()

MAX_BODY = 2 * 1024 * 1024  # the largest request: a roster upload. `signoff serve` refuses more unread


def create_app(config: Config, db: Database | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(resources.path("templates")),
                static_folder=str(resources.path("templates") / "static"),
                instance_path=str(config.path.parent.resolve() / "instance"))
    mail = config.mail
    app.config.update(
        SECRET_KEY=_secret_key(Path(app.instance_path)),
        MAIL_SERVER=mail.server,
        MAIL_PORT=mail.port,
        MAIL_USE_TLS=mail.use_tls,
        MAIL_USE_SSL=mail.use_ssl,
        MAIL_USERNAME=mail.username or None,
        MAIL_DEFAULT_SENDER=mail.sender,
        MAIL_SUPPRESS_SEND=False,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.setting.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,  # a phone may sit on the page for a while before ticking
        MAX_CONTENT_LENGTH=MAX_BODY,
        # Redirects and links take their host from base_url's, never from a client's Host header
        # (anything else is refused with 400); loopback stays open for health checks on the box.
        TRUSTED_HOSTS=[urlsplit(config.setting.base_url).hostname, "localhost", "127.0.0.1",
                       "[::1]"],
    )
    app.extensions["signoff"] = Services.of(config, db)
    csrf.init_app(app)

    from . import admin, confirm, mailer, web

    mailer.init_app(app)
    web.init_app(app)
    confirm.init_app(app)
    admin.init_app(app)
    return app


def _secret_key(instance: Path) -> str:
    """From SIGNOFF_SECRET_KEY, else a key generated once into the instance folder."""
    key = os.environ.get("SIGNOFF_SECRET_KEY")
    if key:
        return key
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process (web or scheduler) wrote it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip()
