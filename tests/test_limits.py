"""Sending within a mail provider's limits: pacing per minute (shared by concurrent ticks), a cap
per rolling 24 hours, throttling and quota answers that stop a run with nothing spent, one alert a
run, and `plan` and the console saying when held-back mail will have gone."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import threading
import time
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from conftest import SIGNOFF
from delivery_helpers import (by_address, mail, one_line_error, outbox, roster_of,  # noqa: F401
                              setting)
from workflow import mailer, pacing

OPEN = "2026-09-01T09:00+01:00"
OPEN_AT = dt.datetime.fromisoformat(OPEN)
PEOPLE = ["amira@example.org", "ben@example.org", "chloe@example.org"]
LONDON = ZoneInfo("Europe/London")


# --- which answers mean "slow down" -------------------------------------------------------------

@pytest.mark.parametrize("code, text, throttled", [
    (421, "4.7.0 Too many connections, try again later", True),
    (421, "Service not available", True),
    (451, "4.7.500 Server busy. Please try again later", True),  # Microsoft 365
    (452, "4.5.3 Too many recipients", True),
    (450, "4.5.127 Excessive message rate from sender", True),
    (550, "5.4.5 Daily user sending quota exceeded", True),  # Google Workspace
    (554, "5.2.0 STOREDRV.Submission.Exception: SubmissionQuotaExceededException", True),
    (451, "4.3.0 Temporary failure, try again", False),
    (452, "4.3.1 Insufficient system storage", False),
    (450, "4.2.1 Mailbox busy", False),
    (550, "5.1.1 No such user", False),
    (554, "5.2.0 STOREDRV.Deliver: mailbox unavailable", False),
    (550, "5.4.5 Mail loop detected", False),
])
def test_throttling_and_quota_answers_are_told_from_refusals_of_one_address(code, text,
                                                                            throttled):
    assert mailer.is_throttling(code, text) is throttled


# --- when held-back mail will have gone ---------------------------------------------------------

def test_at_30_a_minute_the_120th_email_goes_3_minutes_58_after_the_first():
    start = dt.datetime(2026, 9, 3, 8, tzinfo=dt.timezone.utc)
    assert pacing.all_sent_by(120, start, 30, 0) == start + dt.timedelta(minutes=3, seconds=58)
    assert pacing.all_sent_by(1, start, 30, 0) == start
    assert pacing.all_sent_by(0, start, 30, 0) is None


def test_past_the_daily_cap_the_rest_go_as_the_first_sends_leave_the_24_hours():
    start = dt.datetime(2026, 9, 3, 8, tzinfo=dt.timezone.utc)
    earlier = [start - dt.timedelta(hours=20) + dt.timedelta(minutes=i) for i in range(3)]
    # Cap 5, 3 went 20 hours ago: 2 go now, then one as each of the 3 leaves the window.
    assert pacing.all_sent_by(2, start, 0, 5, earlier) == start
    assert pacing.all_sent_by(3, start, 0, 5, earlier) == earlier[0] + pacing.DAY
    assert pacing.all_sent_by(5, start, 0, 5, earlier) == earlier[2] + pacing.DAY
    # Both limits: 3 a second apart, the 4th as the first leaves the window, the 5th a second on.
    assert pacing.all_sent_by(4, start, 60, 3) == start + pacing.DAY
    assert pacing.all_sent_by(5, start, 60, 3) == start + pacing.DAY + dt.timedelta(seconds=1)


def test_one_group_after_another_queues_behind_the_first():
    start = dt.datetime(2026, 9, 3, 8, tzinfo=dt.timezone.utc)
    projection = pacing.Projection(30, 0)
    assert projection.add(600, start) == start + dt.timedelta(minutes=19, seconds=58)
    # A second group due ten minutes in waits for the first to finish.
    assert projection.add(2, start + dt.timedelta(minutes=10)) == start + dt.timedelta(minutes=20,
                                                                                       seconds=2)
    line = pacing.describe(4200, "reminder", start, 30, LONDON)
    assert line == "4,200 reminders waiting: all sent by Thu 3 Sep 09:00 at 30 a minute"


# --- throttled and quota answers stop the run, with nothing spent --------------------------------

@pytest.mark.parametrize("at, reply", [
    ("RCPT", "451 4.7.500 Server busy. Please try again later"),
    ("DATA", "550 5.4.5 Daily user sending quota exceeded"),
], ids=["busy-at-rcpt", "quota-at-data"])
def test_a_throttling_answer_stops_the_run_with_nothing_failed_and_the_next_tick_carries_on(
        setting, cli, mail, at, reply):
    config = setting()
    mail.inbox.add("ben@example.org", at, reply, times=1)
    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 1
    assert one_line_error(result) == (f"signoff: the mail server asks us to slow down: {reply}; "
                                      "2 waiting for a later tick")
    rows = by_address(outbox(config))
    assert rows["amira@example.org"].status == "sent"
    for address in ("ben@example.org", "chloe@example.org"):
        assert (rows[address].status, rows[address].attempts, rows[address].claimed_until,
                rows[address].last_error) == ("pending", 0, None, None)
    assert "office@example.org" not in {row.to_email for row in outbox(config).values()}

    later = cli("tick", "--at", "2026-09-01T09:10+01:00", config=config)
    assert later.exit_code == 0, later.output
    assert mail.inbox.recipients() == Counter(PEOPLE)
    report = cli("report", "--format", "csv", config=config)
    assert [row["delivery"] for row in csv.DictReader(io.StringIO(report.output))] == ["ok"] * 3


def test_a_throttled_greeting_stops_the_run_before_anything_is_claimed(tmp_path, db_url, cli):
    """A server that answers 421 as it is connected to (too many connections)."""
    import socket

    from conftest import initialise, write_config

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def greet_and_close():
        for _ in range(2):
            conn, _ = listener.accept()
            conn.sendall(b"421 4.7.0 Too many connections from your host, try later\r\n")
            conn.close()

    threading.Thread(target=greet_and_close, daemon=True).start()
    try:
        config = initialise(cli, write_config(tmp_path, db_url, port))
        result = cli("tick", "--at", OPEN, config=config)
    finally:
        listener.close()
    assert result.exit_code == 1
    assert one_line_error(result).startswith("signoff: the mail server asks us to slow down: "
                                             "421 4.7.0 Too many connections")
    assert {(r.status, r.attempts, r.claimed_until) for r in outbox(config).values()} == {
        ("pending", 0, None)}


# --- the daily cap ---------------------------------------------------------------------------------

def test_the_daily_cap_holds_the_rest_in_order_for_a_later_tick_and_is_not_a_failure(
        setting, cli, mail):
    config = setting(mail_extra="max_per_day = 2\n")
    first = cli("tick", "--at", OPEN, config=config)
    assert first.exit_code == 0, first.output
    assert sorted(mail.inbox.recipients()) == PEOPLE[:2]  # the oldest first
    assert "1 email waiting: all sent by Wed 2 Sep 09:00 (the mail provider's limits)" in \
        first.output

    plan = cli("plan", "--from", "2026-09-01T09:05", "--to", "2026-09-02T12:00", config=config)
    assert plan.exit_code == 0, plan.output

    same_day = cli("tick", "--at", "2026-09-01T18:00+01:00", config=config)
    assert same_day.exit_code == 0, same_day.output
    assert len(mail.inbox) == 2
    next_day = cli("tick", "--at", "2026-09-02T09:01+01:00", config=config)
    assert next_day.exit_code == 0, next_day.output
    assert mail.inbox.recipients() == Counter(PEOPLE)


# --- the pace ----------------------------------------------------------------------------------------

def arrivals(mail) -> list[float]:
    times: list[float] = []
    mail.inbox.on_data = lambda address: times.append(time.monotonic())
    return times


def assert_paced(times: list[float], gap: float) -> None:
    """One every `gap` seconds on average, and never two together. (Each turn is when a message
    starts; it is seen here when its DATA ends, a few milliseconds of jitter later.)"""
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) > 0.6 * gap, gaps
    assert (times[-1] - times[0]) / len(gaps) > 0.95 * gap, gaps


@pytest.mark.slow
def test_sends_are_paced_evenly_at_max_per_minute(setting, cli, mail):
    people = [f"person{i:02}@example.org" for i in range(10)]
    config = setting(roster=roster_of(people), mail_extra="max_per_minute = 300\n")  # 0.2 s
    times = arrivals(mail)
    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 0, result.output
    assert len(times) == 10
    assert_paced(times, 0.2)
    assert times[-1] - times[0] < 9 * 0.2 + 0.5  # not slower than it need be


@pytest.mark.slow
def test_concurrent_ticks_share_one_pace(setting, mail):
    """Three ticks at once, as cron and a person at the terminal might start them: between them
    the server never gets two emails closer than the pace allows."""
    people = [f"person{i:02}@example.org" for i in range(12)]
    config = setting(roster=roster_of(people), mail_extra="max_per_minute = 300\n")
    times = arrivals(mail)
    ticks = [subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at", OPEN],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [t.communicate(timeout=120) for t in ticks]
    assert [t.returncode for t in ticks] == [0, 0, 0], outputs
    assert mail.inbox.recipients() == Counter({address: 1 for address in people})
    assert_paced(times, 0.2)


# --- one alert a run ---------------------------------------------------------------------------------

def test_the_office_gets_one_alert_a_run_listing_every_failure(setting, cli, mail):
    config = setting()
    mail.inbox.add("ben@example.org", "RCPT", "550 5.1.1 No such user")
    mail.inbox.add("chloe@example.org", "RCPT", "550 5.1.2 Bad destination mailbox address")
    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 1
    alert, = mail.inbox.to("office@example.org")
    assert alert["Subject"] == "2 policy reminders could not be delivered"
    text = alert.get_body(("plain",)).get_content()
    assert "Ben Lewis <ben@example.org>" in text and "550 5.1.1 No such user" in text
    assert "Chloe Evans <chloe@example.org>" in text and "550 5.1.2" in text


# --- plan and the console say when held-back mail will have gone -------------------------------------

def test_plan_says_when_an_opening_days_reminders_will_all_have_gone(setting, cli, mail):
    people = [f"person{i:02}@example.org" for i in range(90)]
    config = setting(roster=roster_of(people), mail_extra="max_per_minute = 30\n")
    plan = cli("plan", "--from", "2026-08-31T12:00", "--to", "2026-09-02", config=config)
    assert plan.exit_code == 0, plan.output
    assert "  … 90 emails waiting: all sent by Tue 1 Sep 08:02 at 30 a minute" in plan.output


def test_the_dashboard_says_how_many_wait_and_until_when(setting, cli, mail, tmp_path):
    import time_machine

    from admin_helpers import ADMIN, PASSWORD, sign_in
    from workflow import config as config_mod
    from workflow.app import create_app

    config = setting(mail_extra="max_per_minute = 30\n")
    mail.stop()  # queued and not sent: they wait
    assert cli("tick", "--at", OPEN, config=config).exit_code == 1
    added = cli("admin", "add", ADMIN, "--password-stdin", input=f"{PASSWORD}\n", config=config)
    assert added.exit_code == 0, added.output
    app = create_app(config_mod.load(config))
    try:
        client = app.test_client()
        with time_machine.travel(OPEN_AT + dt.timedelta(minutes=5), tick=False):
            sign_in(client)
            page = client.get("/admin/").get_data(as_text=True)
    finally:
        app.extensions["signoff"].db.dispose()
    assert "3 emails waiting: all sent by Tue 1 Sep 09:05 at 30 a minute" in page
    # The next send is what is queued: the plan, the dashboard and the tick agree on it.
    assert "First reminder of the Use of Social Media Policy to 3 people (queued)" in page
