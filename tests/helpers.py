"""Helpers shared by test modules: what a person does with an email, and reading one; starting
`signoff serve` and the scheduler as processes and talking to them; a person's first name and a
config's contact line, set for a story."""

from __future__ import annotations

import datetime as dt
import http.client
import re
import signal
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import time_machine

from conftest import SIGNOFF, free_port, hidden_fields
from workflow import config as config_mod
from workflow.app import create_app


# A second policy for everyone, on the setting's schedule, for the tests of several policies.
CODE_OF_CONDUCT = """
[[policy]]
slug = "code-of-conduct"
title = "Staff Code of Conduct"
text = \"\"\"# Staff Code of Conduct

Treat every child, parent and colleague with respect.
\"\"\"
statements = ["I have read the code of conduct and follow it."]
"""


def parts(message: EmailMessage) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def flat(text: str) -> str:
    """Text with tags removed and whitespace folded, so wrapping does not matter."""
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def confirm_by_page(config: Path, link: str, when: dt.datetime) -> str:
    """What the person does: open the link, tick every statement, press the button. Returns the
    page they are then shown."""
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
            return client.get(urlsplit(link).path).get_data(as_text=True)
    finally:
        app.extensions["signoff"].db.dispose()


def decline_by_page(config: Path, link: str, when: dt.datetime, reason: str,
                    statement: str = "") -> tuple[int, str]:
    """What someone who cannot confirm does: open the link, open "I can't confirm this", choose
    what (`statement`: its index, or "" for the whole policy), say why, send it. Returns the
    answer's status and the page they are then shown."""
    app = create_app(config_mod.load(config))
    try:
        client = app.test_client()
        with time_machine.travel(when, tick=False):
            html = client.get(urlsplit(link).path).get_data(as_text=True)
            form = {**hidden_fields(html), "statement": statement, "reason": reason,
                    "action": "decline"}
            done = client.post(urlsplit(link).path, data=form)
            if done.status_code != 303:
                return done.status_code, done.get_data(as_text=True)
            return 303, client.get(urlsplit(link).path).get_data(as_text=True)
    finally:
        app.extensions["signoff"].db.dispose()


def start(config: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """Start `signoff <args>` in the background, its output going to a log file."""
    log = config.parent / f"{args[0]}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*SIGNOFF, "--config", str(config), *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd=config.parent)
    return proc, log


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def poll(condition, what: str, proc: subprocess.Popen, log: Path, deadline: float = 60):
    """Wait for condition() to be truthy, failing early (with the log) if the process dies."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


def get(url: str, method: str = "GET") -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path, headers={"User-Agent": "MailScanner/2.0"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return 0, ""
    finally:
        conn.close()



def serve(config: Path, *args: str) -> tuple[subprocess.Popen, Path, str]:
    port = free_port()
    proc, log = start(config, "serve", "--port", str(port), *args)
    base = f"http://127.0.0.1:{port}"
    poll(lambda: get(base + "/healthz")[0] == 200, "/healthz to answer 200", proc, log)
    return proc, log, base


def set_first_name(config: Path, email: str, first_name: str) -> None:
    """Give someone on the roster a first name ("" for none), straight in the database."""
    from sqlalchemy import update

    from workflow.db import Database
    from workflow.models import Staff

    db = Database(config_mod.load(config).database.url)
    try:
        with db.write() as session:
            session.execute(update(Staff).where(Staff.email == email)
                            .values(first_name=first_name))
    finally:
        db.dispose()


CONTACT = "Questions? Ask Mrs Patel in the school office."


def with_contact(config: Path, contact: str = CONTACT) -> Path:
    """The config at `config` with a [setting] contact line."""
    text = config.read_text()
    assert "\n[head_teacher]" in text
    config.write_text(text.replace("\n[head_teacher]", f'contact = "{contact}"\n\n[head_teacher]',
                                   1))
    return config
