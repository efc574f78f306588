"""The two long-running processes as an operator runs them: `signoff serve` answering real HTTP, and
`signoff scheduler` ticking on the real clock and stopping cleanly on SIGTERM."""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from conftest import free_port, hidden_fields, link_in, run_signoff, write_config
from delivery_helpers import database, roster_of
from helpers import get, poll, serve, start, stop

pytestmark = pytest.mark.slow  # each starts signoff or another program as a process

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def report_row(cli, config: Path, email: str) -> list[str]:
    result = cli("report", "--format", "csv", config=config)
    assert result.exit_code == 0, result.output
    return next(r for r in result.output.splitlines() if f",{email}," in r).split(",")


@SQLITE_ONLY
def test_serve_answers_real_http_and_records_a_confirmation(setup, cli, smtp):
    # Real clock, no working-day shifts: whatever today is, its cycle's first reminders go now.
    config = setup(working_days_only="false")
    assert cli("tick", config=config).exit_code == 0
    links = {m["To"].addresses[0].addr_spec: urlsplit(link_in(m)).path for m in smtp.inbox.messages}
    proc, log, base = serve(config)
    try:
        status, body = get(base + "/healthz")
        assert json.loads(body) == {"status": "ok", "database": "ok"}

        for method in ("GET", "HEAD") * 3:  # a mail scanner opening Ben's link
            assert get(base + links["ben@example.org"], method)[0] == 200

        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.addheaders = [("User-Agent", "Phone Browser 1.0")]
        with browser.open(base + links["amira@example.org"], timeout=10) as page:
            html = page.read().decode()
            assert page.headers["X-Frame-Options"] == "DENY"
        assert "Hello Amira." in html and "<script" not in html
        assert any(c.name == "session" for c in jar)  # the CSRF token lives in the session
        form = urllib.parse.urlencode({**hidden_fields(html), "s0": "y", "s1": "y"}).encode()
        with browser.open(base + links["amira@example.org"], data=form, timeout=10) as done:
            assert done.status == 200 and "You confirmed" in done.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            browser.open(base + "/c/" + "x" * 43, timeout=10)
        assert missing.value.code == 404 and "Link not recognised" in missing.value.read().decode()
    finally:
        code = stop(proc)
    assert code == 0  # SIGTERM stops it cleanly, as systemd expects
    assert "Traceback" not in log.read_text() and "signoff serve stopped" in log.read_text()
    amira = report_row(cli, config, "amira@example.org")
    assert amira[4] == "confirmed" and "127.0.0.1" in amira and "Phone Browser 1.0" in amira
    assert report_row(cli, config, "ben@example.org")[4] == "pending"


def test_healthz_is_503_when_the_database_goes_away(postgres, tmp_path, smtp, cli):
    if postgres is None:
        pytest.skip("PostgreSQL not available")
    import psycopg

    url = postgres.new_database()
    config = write_config(tmp_path, url, smtp.port)
    assert cli("init", config=config).exit_code == 0
    proc, log, base = serve(config)
    try:
        name = url.rsplit("/", 1)[1]
        server = url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://")
        admin = server + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        status, body = get(base + "/healthz")
        assert status == 503
        assert json.loads(body) == {"status": "error", "database": "unavailable"}
        assert "Traceback" not in body
    finally:
        stop(proc)


@SQLITE_ONLY
def test_scheduler_ticks_at_once_logs_each_tick_and_stops_on_sigterm(setup, cli, smtp):
    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import TickRun

    config = setup(interval_seconds=5, working_days_only="false")
    proc, log = start(config, "scheduler")
    try:
        poll(lambda: len(smtp.inbox) >= 3, "the first reminders", proc, log)
        # A second tick five seconds on: it logs its line and sends nothing again.
        poll(lambda: log.read_text().count(" tick at ") >= 2, "a second tick", proc, log)
    finally:
        code = stop(proc)
    assert code == 0
    text = log.read_text()
    assert "scheduler stopped" in text and "Traceback" not in text
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages) == [
        "amira@example.org", "ben@example.org", "chloe@example.org"]
    summaries = [line for line in text.splitlines() if " tick at " in line]
    assert "3 sent" in summaries[0] and "0 sent" in summaries[1]
    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            finished = session.scalar(select(func.count()).select_from(TickRun)
                                      .where(TickRun.finished_at.is_not(None)))
    finally:
        db.dispose()
    assert len(summaries) == finished  # one summary line per tick


def paced(setup, people: list[str], per_minute: int) -> Path:
    """A setting of `people`, sending at most `per_minute`, whose scheduler ticks once an hour."""
    config = setup(roster=roster_of(people), interval_seconds=3600, working_days_only="false")
    config.write_text(config.read_text().replace("[mail]\n",
                                                 f"[mail]\nmax_per_minute = {per_minute}\n"))
    return config


def test_scheduler_paces_an_opening_day_and_says_in_its_log_when_it_will_be_done(setup, smtp):
    """Within the provider's limit (here 600 a minute: one every 0.1 s), from the one process:
    the log says at the start of the run when the last email will have gone."""
    people = [f"person{i:02}@example.org" for i in range(20)]
    config = paced(setup, people, per_minute=600)
    proc, log = start(config, "scheduler")
    try:
        poll(lambda: " tick at " in log.read_text(), "the first tick's line", proc, log)
        children = subprocess.run(["ps", "--ppid", str(proc.pid), "-o", "pid="],
                                  capture_output=True, text=True).stdout.split()
    finally:
        code = stop(proc)
    assert code == 0
    text = log.read_text()
    assert "20 emails waiting: all sent by " in text and " at 600 a minute" in text, text
    assert "20 sent" in text and "Traceback" not in text
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages) == people
    assert children == []  # one process does it all


def test_scheduler_stopped_mid_paced_run_hands_back_its_claim_and_exits_at_once(
        setup, smtp, cli):
    """SIGTERM while a tick sends at the provider's pace (here one a second, with hours of work
    in a real school): the scheduler exits after the message in hand, holds no claim, and the
    next tick sends the rest, each once."""
    from workflow.models import Outbox

    people = [f"person{i:02}@example.org" for i in range(20)]
    config = paced(setup, people, per_minute=60)
    proc, log = start(config, "scheduler")
    try:
        poll(lambda: len(smtp.inbox) >= 2, "two emails sent", proc, log)
    finally:
        stopped_at = time.monotonic()
        code = stop(proc)
    assert code == 0 and time.monotonic() - stopped_at < 5
    text = log.read_text()
    assert "stopping after the message in hand" in text and "Traceback" not in text
    assert 2 <= len(smtp.inbox) < 20
    with database(config) as db, db.read() as session:
        held = session.scalar(select(func.count()).select_from(Outbox)
                              .where(Outbox.claimed_until.is_not(None)))
    assert held == 0
    config.write_text(config.read_text().replace("max_per_minute = 60\n", ""))
    again = cli("tick", config=config)
    assert again.exit_code == 0, again.output
    received = [m["To"].addresses[0].addr_spec for m in smtp.inbox.messages]
    assert sorted(received) == people


@SQLITE_ONLY
def test_scheduler_keeps_going_while_the_mail_server_is_down(setup, smtp):
    config = setup(interval_seconds=5, working_days_only="false")
    # Point the mail settings at a port where nothing listens.
    config.write_text(config.read_text().replace(f"port = {smtp.port}", f"port = {free_port()}"))
    proc, log = start(config, "scheduler")
    try:
        poll(lambda: log.read_text().count("cannot reach the mail server") >= 2,
             "two ticks that could not send", proc, log)
    finally:
        code = stop(proc)
    assert code == 0
    text = log.read_text()
    assert "Traceback" not in text and "scheduler stopped" in text
    assert all("WARNING" in line for line in text.splitlines() if " tick at " in line)


@SQLITE_ONLY
@pytest.mark.parametrize("command", [["serve", "--port", "8"], ["scheduler"]])
def test_long_running_commands_refuse_an_uninitialised_database(tmp_path, db_url, smtp, command):
    config = write_config(tmp_path, db_url, smtp.port)
    result = run_signoff(*command, config=config, timeout=60)
    assert result.returncode == 2
    assert "signoff init" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
