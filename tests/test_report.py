"""`signoff report`: the contract's CSV columns, ISO-8601 times with offsets, pending/confirmed/exempt,
delivery failures with the server's reason, and the text format's "confirmed X of Y" line."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from pathlib import Path

import time_machine
from sqlalchemy import select

from conftest import ROOT, free_port, link_in
from helpers import confirm_by_page, parts
from workflow import config as config_mod
from workflow.app import create_app
from workflow.models import Request, Staff

HEADER = ("name,email,policy,version,status,first_sent_at,reminders_sent,last_sent_at,escalated,"
          "confirmed_at,delivery")
UTC = dt.timezone.utc


def report(cli, config: Path, fmt: str, when: dt.datetime):
    with time_machine.travel(when, tick=False):
        result = cli("report", "--format", fmt, config=config)
    assert result.exit_code == 0, result.output
    return result.stdout


def rows(cli, config: Path, when: dt.datetime) -> dict[str, dict[str, str]]:
    text = report(cli, config, "csv", when)
    return {row["email"]: row for row in csv.DictReader(io.StringIO(text))}


def exempt(config: Path, address: str, reason: str, when: dt.datetime) -> None:
    app = create_app(config_mod.load(config))
    svc = app.extensions["signoff"]
    try:
        with svc.db.write() as session:
            request = session.scalars(select(Request).join(Staff, Request.staff_id == Staff.id)
                                      .where(Staff.email == address)).one()
            request.exempt_at, request.exempt_reason = when, reason
            request.closed_at, request.next_check_at = when, None
    finally:
        svc.db.dispose()


def tick(cli, config: Path, when: str) -> None:
    result = cli("tick", "--at", when, config=config)
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), result.output


def test_csv_header_is_the_contracts(setup, cli):
    config = setup()
    text = report(cli, config, "csv", dt.datetime(2026, 9, 10, tzinfo=UTC))
    assert text.splitlines()[0].startswith(HEADER)


def test_before_the_first_tick_everyone_is_pending(setup, cli):
    config = setup()
    table = rows(cli, config, dt.datetime(2026, 9, 10, tzinfo=UTC))
    assert sorted(table) == ["amira@example.org", "ben@example.org", "chloe@example.org"]
    for row in table.values():
        assert row["status"] == "pending"
        assert row["policy"] == "social-media"
        assert row["reminders_sent"] == "0"
        assert row["first_sent_at"] == row["last_sent_at"] == row["confirmed_at"] == ""
        assert row["escalated"] == "no" and row["delivery"] == "ok"


def test_a_cycle_in_the_report(setup, cli, smtp):
    config = setup()
    smtp.inbox.refuse["amira@example.org"] = "550 5.1.1 No such user"
    tick(cli, config, "2026-09-01T09:00+01:00")
    confirm_by_page(config, link_in(smtp.inbox.to("chloe@example.org")[0]),
                    dt.datetime(2026, 9, 2, 10, 0, tzinfo=UTC))
    exempt(config, "ben@example.org", "On maternity leave", dt.datetime(2026, 9, 3, 9, tzinfo=UTC))
    for day in ("08", "15", "23"):  # the 23rd: the day after the date asked for, the digest
        tick(cli, config, f"2026-09-{day}T09:00+01:00")
    assert len(smtp.inbox.to("head@example.org")) == 1

    table = rows(cli, config, dt.datetime(2026, 9, 23, 12, tzinfo=UTC))
    amira, ben, chloe = (table[f"{n}@example.org"] for n in ("amira", "ben", "chloe"))

    assert amira["status"] == "pending"
    assert amira["delivery"] == "failed: 550 5.1.1 No such user"
    assert amira["reminders_sent"] == "0" and amira["first_sent_at"] == ""
    assert amira["escalated"] == "yes"

    assert ben["status"] == "exempt"
    assert ben["reminders_sent"] == "1" and ben["escalated"] == "no" and ben["delivery"] == "ok"
    assert ben["first_sent_at"] == "2026-09-01T09:00:00+01:00"

    sha = hashlib.sha256((ROOT / "policies" / "social-media.md").read_bytes()).hexdigest()
    assert chloe["status"] == "confirmed" and chloe["version"] == sha
    assert chloe["confirmed_at"] == "2026-09-02T11:00:00+01:00"
    assert chloe["first_sent_at"] == chloe["last_sent_at"] == "2026-09-01T09:00:00+01:00"
    assert chloe["reminders_sent"] == "1" and chloe["delivery"] == "ok"

    for row in table.values():
        for column in ("first_sent_at", "last_sent_at", "confirmed_at"):
            if row[column]:
                moment = dt.datetime.fromisoformat(row[column])
                assert moment.utcoffset() is not None, (column, row[column])

    text = report(cli, config, "text", dt.datetime(2026, 9, 23, 12, tzinfo=UTC))
    assert "social-media: confirmed 1 of 2 (1 exempt)" in text
    amira_line = next(line for line in text.splitlines() if "amira@example.org" in line)
    assert "pending" in amira_line and "failed: 550 5.1.1 No such user" in amira_line


def test_follow_ups_count_in_reminders_sent_and_times_cross_into_gmt(setup, cli, smtp):
    config = setup(annual_open="10-20")
    for day in ("20", "27"):
        tick(cli, config, f"2026-10-{day}T09:00+00:00")
    tick(cli, config, "2026-11-03T09:00+00:00")
    amira = rows(cli, config, dt.datetime(2026, 11, 4, tzinfo=UTC))["amira@example.org"]
    assert amira["reminders_sent"] == "3"
    assert amira["first_sent_at"] == "2026-10-20T10:00:00+01:00"  # BST
    assert amira["last_sent_at"] == "2026-11-03T09:00:00+00:00"   # GMT


def test_a_follow_up_waiting_in_the_outbox_does_not_hide_a_failure(setup, cli, smtp):
    config = setup()
    smtp.inbox.refuse["ben@example.org"] = "550 5.1.1 No such user"
    tick(cli, config, "2026-09-01T09:00+01:00")
    # The mail server is now unreachable: the follow-up is queued but cannot go.
    config.write_text(config.read_text().replace(f"port = {smtp.port}", f"port = {free_port()}"))
    tick(cli, config, "2026-09-08T09:00+01:00")
    ben = rows(cli, config, dt.datetime(2026, 9, 8, 9, tzinfo=UTC))["ben@example.org"]
    assert ben["delivery"] == "failed: 550 5.1.1 No such user"
    assert ben["reminders_sent"] == "0"


def test_the_report_at_the_moment_a_digest_went_counts_the_reminders_it_did(setup, cli, smtp):
    """Amira's second follow-up is still being retried when the digest goes, and gets through
    later that day: the digest said 2 reminders sent, and so does the report for that moment; the
    report for the evening says 3."""
    config = setup()
    for day in ("01", "08"):
        tick(cli, config, f"2026-09-{day}T09:00+01:00")
    smtp.inbox.refuse["amira@example.org"] = "450 4.2.1 Mailbox busy, try later"
    tick(cli, config, "2026-09-15T09:00+01:00")
    tick(cli, config, "2026-09-23T09:00+01:00")
    digest, = smtp.inbox.to("head@example.org")
    said = next(line for line in parts(digest)[0].splitlines() if "amira@example.org" in line)
    assert "2 reminders sent; DELIVERY PROBLEM: retrying: 450 4.2.1 Mailbox busy" in said
    del smtp.inbox.refuse["amira@example.org"]
    tick(cli, config, "2026-09-23T12:00+01:00")
    assert len(smtp.inbox.to("amira@example.org")) == 3

    then = rows(cli, config, dt.datetime(2026, 9, 23, 9, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    later = rows(cli, config, dt.datetime(2026, 9, 23, 18, tzinfo=UTC))
    for who in ("ben", "chloe"):
        line = next(line for line in parts(digest)[0].splitlines() if f"{who}@example.org" in line)
        assert f"{then[f'{who}@example.org']['reminders_sent']} reminders sent" in line
    assert then["amira@example.org"]["reminders_sent"] == "2"
    assert later["amira@example.org"]["reminders_sent"] == "3"
    assert later["amira@example.org"]["delivery"] == "ok"


def test_text_report_counts_confirmed_of_everyone(setup, cli, smtp):
    config = setup()
    tick(cli, config, "2026-09-01T09:00+01:00")
    confirm_by_page(config, link_in(smtp.inbox.to("ben@example.org")[0]),
                    dt.datetime(2026, 9, 2, 10, 0, tzinfo=UTC))
    text = report(cli, config, "text", dt.datetime(2026, 9, 3, tzinfo=UTC))
    assert "social-media: confirmed 1 of 3" in text
    assert "(0 exempt)" not in text


def test_spreadsheet_formulas_in_names_stay_text(setup, cli):
    config = setup(roster='name,email\n"=HYPERLINK(""http://evil.example"",""x"")",eve@example.org\n')
    row = rows(cli, config, dt.datetime(2026, 9, 10, tzinfo=UTC))["eve@example.org"]
    assert row["name"].startswith("'=")


def test_report_before_init_is_one_line(tmp_path, db_url, smtp, cli):
    from conftest import write_config

    config = write_config(tmp_path, db_url, smtp.port)
    result = cli("report", "--format", "csv", config=config)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "signoff init" in result.stderr
