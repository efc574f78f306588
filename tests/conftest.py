"""Shared fixtures: a real SMTP server on loopback (aiosmtpd), a real SQLite file or a throwaway
PostgreSQL cluster, a config file written per test, the Flask app, and the CLI two ways."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from ports import free_port  # noqa: F401 (the tests import it from here)
from template_db import Templates

ROOT = Path(__file__).resolve().parent.parent
LONDON = dt.timezone(dt.timedelta(hours=1))  # BST, for literal September times in tests
SIGNOFF = [sys.executable, "-m", "workflow"]


# --- mail ------------------------------------------------------------------------------------

@dataclass
class Inbox:
    """What the test SMTP server received, and how it should misbehave."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> "550 5.1.1 No such user"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address.lower() in m["To"].lower()]

    def subjects(self) -> list[str]:
        with self.lock:
            return [m["Subject"] for m in self.messages]

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def __len__(self) -> int:
        with self.lock:
            return len(self.messages)


class _Handler:
    def __init__(self, inbox: Inbox):
        self.inbox = inbox

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.inbox.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.inbox.lock:
            self.inbox.messages.append(message)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: Inbox
    controller: Controller


@pytest.fixture
def smtp():
    inbox = Inbox()
    port = free_port()
    controller = Controller(_Handler(inbox), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, inbox, controller)
    finally:
        controller.stop()


def link_in(message: email.message.EmailMessage) -> str:
    """The personal link, checked to be the same in the text and the HTML part."""
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    text_links = set(re.findall(r"https?://\S+/c/[A-Za-z0-9_-]{43}", text))
    html_links = set(re.findall(r"https?://[^\"<\s]+/c/[A-Za-z0-9_-]{43}", html))
    assert len(text_links) == 1 and text_links == html_links, (text_links, html_links)
    return text_links.pop()


def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of a page's form (CSRF token, version), whatever order their attributes."""
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name and 'type="hidden"' in tag:
            fields[name.group(1)] = value.group(1) if value else ""
    return fields


# --- databases -------------------------------------------------------------------------------

from pgcluster import PostgresCluster  # noqa: E402 (shared with bench/)

@pytest.fixture(scope="session")
def postgres():
    cluster = PostgresCluster(root=_roomy_tmpfs())
    if not cluster.available:
        yield None
        return
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _roomy_tmpfs() -> str | None:
    """/dev/shm, where it is writable with a gigabyte free (a container's default 64 MB is not).
    The throwaway cluster already runs with fsync=off; in memory, making each test's database (a
    copy of a few MB) costs a fifth of what it does on disk."""
    try:
        room = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = room.f_bavail * room.f_frsize >= 1 << 30 and os.access("/dev/shm", os.W_OK)
    return "/dev/shm" if roomy else None


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """Every database test runs on a real SQLite file and, where it can, on a real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'signoff.db'}"
        return
    cluster = request.getfixturevalue("postgres")
    if cluster is None:
        pytest.skip("PostgreSQL not available: no server binaries under /usr/lib/postgresql "
                    "and SIGNOFF_TEST_DATABASE_URL is not set")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)  # a few MB each: hundreds of them slow the server down


# --- config, app, CLI ------------------------------------------------------------------------

CONFIG = """\
[setting]
name = "Test Nursery"
timezone = "Europe/London"
base_url = "http://signoff.test"

[head_teacher]
name = "Helen Head"
email = "head@example.org"

[database]
url = "{db_url}"

[mail]
server = "127.0.0.1"
port = {smtp_port}
sender = "Policy Reminders <noreply@example.org>"
admin_email = "{admin_email}"
timeout_seconds = 5

[schedule]
annual_open = "{annual_open}"
send_time = "08:00"
reminder_after_days = {reminder_after_days}
escalate_after_days = {escalate_after_days}
digest_every_days = {digest_every_days}
working_days_only = {working_days_only}
holidays = "GB-ENG"

[scheduler]
interval_seconds = {interval_seconds}

[[policy]]
slug = "social-media"
title = "Use of Social Media Policy"
file = "policy.md"
reminder_note = "Check your privacy settings are still set high."
statements = ["I have re-read the policy.", "No child or parent is my online friend or follower."]
"""

DEFAULTS: dict[str, Any] = dict(annual_open="09-01", reminder_after_days="[7, 14]",
                                escalate_after_days=21, digest_every_days=7,
                                working_days_only="true", admin_email="office@example.org",
                                interval_seconds=300)


def write_config(folder: Path, db_url: str, smtp_port: int, extra: str = "",
                 **overrides: Any) -> Path:
    """The test config; `extra` is TOML added at its end (more policies, closures)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "policies" / "social-media.md", folder / "policy.md")
    values = {**DEFAULTS, **overrides}
    path = folder / "signoff.toml"
    path.write_text(CONFIG.format(db_url=db_url, smtp_port=smtp_port, **values) + extra)
    return path


ROSTER = """\
name,email,role,start_date,active
Amira Khan,amira@example.org,Practitioner,,yes
Ben Lewis,ben@example.org,Room Leader,,yes
Chloe Evans,chloe@example.org,Teacher,,yes
"""


@pytest.fixture
def cli(tmp_path):
    """Run the CLI in-process through click's runner: cli("tick", "--at", ...) -> Result."""
    from workflow.cli import cli as command

    def invoke(*args: str, config: Path | None = None, input: str | None = None):
        path = config or tmp_path / "signoff.toml"
        return CliRunner().invoke(command, ["--config", str(path), *args], input=input,
                                  catch_exceptions=False)

    return invoke


def run_signoff(*args: str, config: Path, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run the real `signoff` command as a subprocess."""
    return subprocess.run([*SIGNOFF, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=config.parent, **kw)


@pytest.fixture
def setup(tmp_path, db_url, smtp, cli):
    """A configured, initialised setting with the three-person roster imported."""
    def make(roster: str = ROSTER, **overrides: Any) -> Path:
        return initialise(cli, write_config(tmp_path, db_url, smtp.port, **overrides), roster)

    return make


def initialise(cli, path: Path, roster: str = ROSTER) -> Path:
    """`signoff init` and a roster import for the config at `path`, on a copy of the session's
    migrated database where the config names a new one (see template_db.py)."""
    from workflow import config

    TEMPLATES.copy(config.load(path).database.url)
    assert cli("init", config=path).exit_code == 0
    (path.parent / "staff.csv").write_text(roster)
    result = cli("staff", "import", str(path.parent / "staff.csv"), config=path)
    assert result.exit_code == 0, result.output
    return path


TEMPLATES = Templates()


@pytest.fixture(scope="session", autouse=True)
def _templates():
    yield TEMPLATES
    TEMPLATES.close()


def pytest_collection_modifyitems(items):
    """`make test-fast` leaves out the `browser` tests (tests/browser) and the `postgres` ones
    (db_url's PostgreSQL case, or the `postgres` fixture), given here; `slow` is marked on each
    test that starts a process or takes seconds."""
    for item in items:
        if Path(str(item.fspath)).resolve().parent == ROOT / "tests" / "browser":
            item.add_marker(pytest.mark.browser)
        callspec = getattr(item, "callspec", None)
        if (callspec is not None and callspec.params.get("db_url") == "postgresql") \
                or "postgres" in item.fixturenames:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def app(setup):
    from workflow import config
    from workflow.app import create_app

    application = create_app(config.load(setup()))
    yield application
    application.extensions["signoff"].db.dispose()


def at(text: str) -> dt.datetime:
    """A moment in the test's story: '2026-09-01 09:00' is London time."""
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/London"))
