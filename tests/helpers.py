"""Helpers shared by test modules: what a person does with an email, and reading one."""

from __future__ import annotations

import datetime as dt
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import time_machine

from conftest import hidden_fields
from workflow import config as config_mod
from workflow.app import create_app


def parts(message: EmailMessage) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def flat(text: str) -> str:
    """Text with tags removed and whitespace folded, so wrapping does not matter."""
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def confirm_by_page(config: Path, link: str, when: dt.datetime) -> None:
    """What the person does: open the link, tick every statement, press the button."""
    app = create_app(config_mod.load(config))
    try:
        client = app.test_client()
        with time_machine.travel(when, tick=False):
            page = client.get(urlsplit(link).path)
            assert page.status_code == 200
            html = page.get_data(as_text=True)
            form = hidden_fields(html)
            assert set(form) == {"csrf_token", "version"}, html
            for name in re.findall(r'type="checkbox" id="[^"]+" name="([^"]+)"', html):
                form[name] = "y"
            done = client.post(urlsplit(link).path, data=form)
            assert done.status_code == 303, done.get_data(as_text=True)
    finally:
        app.extensions["signoff"].db.dispose()
