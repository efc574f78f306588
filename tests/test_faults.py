"""Delivery you can trust: a real SMTP server that is down, refuses, stalls, drops the line, rejects
our login, or outlives a killed tick — on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import ROSTER, SIGNOFF, run_signoff, write_config
from delivery_helpers import (by_address, database, mail, one_line_error, outbox,  # noqa: F401
                              roster_of, setting, table)
from smtp_faults import FaultServer, password_checker

OPEN = "2026-09-01T09:00+01:00"
OPEN_AT = dt.datetime.fromisoformat(OPEN)
PEOPLE = ["amira@example.org", "ben@example.org", "chloe@example.org"]
RUN = 15  # seconds a tick of three people may take here, at most (a stall times out in one)


# --- the server is down, then back ------------------------------------------------------------

def test_server_down_costs_nothing_and_the_next_tick_sends_everything_once(setting, cli, mail):
    mail.stop()
    config = setting()
    down = cli("tick", "--at", OPEN, config=config)
    assert down.exit_code == 1
    assert one_line_error(down).startswith(f"signoff: cannot reach the mail server 127.0.0.1:{mail.port}")
    rows = outbox(config)
    assert len(rows) == 3  # nothing lost: every reminder is queued
    assert {(r.status, r.attempts, r.claimed_until) for r in rows.values()} == {("pending", 0, None)}
    # Meanwhile the timeline counts the follow-ups from the next tick, when the reminders will go.
    plan = cli("plan", "--from", "2026-09-01T09:00", "--to", "2026-09-30", config=config)
    assert plan.exit_code == 0, plan.output
    assert plan.output.count("follow-up 1") == 3
    assert "2026-09-08 Tue 08:00  follow-up 1" in plan.output

    mail.start()
    back = cli("tick", "--at", "2026-09-01T09:10+01:00", config=config)
    assert back.exit_code == 0, back.output
    again = cli("tick", "--at", "2026-09-01T09:20+01:00", config=config)
    assert again.exit_code == 0
    assert mail.inbox.recipients() == Counter(PEOPLE)
    assert {r.status for r in outbox(config).values()} == {"sent"}


# --- transient refusals back off and are delivered once ---------------------------------------

@pytest.mark.parametrize("at, action", [
    ("RCPT", "450 4.2.1 Mailbox busy, try again later"),
    ("DATA", "452 4.3.1 Insufficient system storage"),
    ("DATA", "stall"),  # longer than [mail] timeout_seconds
    ("DATA", "drop"),   # the connection goes mid-message
], ids=["4xx-rcpt", "4xx-data", "timeout", "dropped"])
@pytest.mark.slow
def test_transient_refusal_is_retried_with_growing_backoff_and_delivered_once(
        setting, cli, mail, at, action):
    config = setting(timeout=1)
    mail.inbox.add("ben@example.org", at, action, times=2, stall_seconds=2.5)

    first = cli("tick", "--at", OPEN, config=config)
    assert first.exit_code == 1
    assert "Traceback" not in first.output
    ben = by_address(outbox(config))["ben@example.org"]
    assert (ben.status, ben.attempts) == ("retrying", 1)
    assert ben.last_error
    # Exponential backoff from 5 minutes, with ±25% jitter, counted from the refusal: a few
    # seconds into the run that began at OPEN (its clock moves on as it works).
    delay1 = ben.next_attempt_at - OPEN_AT
    assert dt.timedelta(minutes=3.75) <= delay1 <= dt.timedelta(minutes=6.25, seconds=RUN)
    assert delay1 != dt.timedelta(minutes=5)
    assert sorted(mail.inbox.recipients()) == ["amira@example.org", "chloe@example.org"]

    early = cli("tick", "--at", (OPEN_AT + dt.timedelta(minutes=3)).isoformat(), config=config)
    assert early.exit_code == 0  # nothing due: ben waits out his backoff
    assert by_address(outbox(config))["ben@example.org"].attempts == 1

    second_at = ben.next_attempt_at
    second = cli("tick", "--at", second_at.isoformat(), config=config)
    assert second.exit_code == 1
    ben = by_address(outbox(config))["ben@example.org"]
    assert (ben.status, ben.attempts) == ("retrying", 2)
    delay2 = ben.next_attempt_at - second_at
    assert dt.timedelta(minutes=7.5) <= delay2 <= dt.timedelta(minutes=12.5, seconds=RUN)

    third = cli("tick", "--at", ben.next_attempt_at.isoformat(), config=config)
    assert third.exit_code == 0, third.output
    ben = by_address(outbox(config))["ben@example.org"]
    assert (ben.status, ben.attempts) == ("sent", 3)
    assert mail.inbox.recipients() == Counter(PEOPLE)


@pytest.mark.slow
def test_a_message_refused_every_time_backs_off_to_the_cap_then_fails_and_is_reported(
        setting, cli, mail):
    from workflow.outbox import BACKOFF_CAP, MAX_ATTEMPTS

    config = setting()
    mail.inbox.add("ben@example.org", "RCPT", "450 4.2.1 Mailbox busy, try again later")
    when, delays = OPEN_AT, []
    for _ in range(MAX_ATTEMPTS):
        assert cli("tick", "--at", when.isoformat(), config=config).exit_code == 1
        ben = by_address(outbox(config))["ben@example.org"]
        if ben.status == "failed":
            break
        delays.append(ben.next_attempt_at - when)
        when = ben.next_attempt_at
    assert (ben.status, ben.attempts) == ("failed", MAX_ATTEMPTS)
    assert ben.last_error == (f"gave up after {MAX_ATTEMPTS} attempts: "
                              "450 4.2.1 Mailbox busy, try again later")
    assert max(delays) <= BACKOFF_CAP * 1.25 and max(delays) >= BACKOFF_CAP * 0.75
    report = cli("report", "--format", "csv", config=config)
    assert f"failed: gave up after {MAX_ATTEMPTS} attempts" in report.output


@pytest.mark.slow
def test_concurrent_ticks_make_one_retry_attempt(setting, cli, mail):
    config = setting()
    mail.inbox.add("ben@example.org", "RCPT", "450 4.2.1 Mailbox busy, try again later")
    assert cli("tick", "--at", OPEN, config=config).exit_code == 1
    retry_at = by_address(outbox(config))["ben@example.org"].next_attempt_at.isoformat()

    ticks = [subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at", retry_at],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [t.communicate(timeout=60) for t in ticks]
    assert all("Traceback" not in err for _, err in outputs)
    ben = by_address(outbox(config))["ben@example.org"]
    assert ben.attempts == 2  # one attempt between the three ticks
    assert mail.inbox.hits[("ben@example.org", "RCPT", "450 4.2.1 Mailbox busy, try again later")] == 2


# --- permanent refusal --------------------------------------------------------------------------

@pytest.mark.parametrize("at, reply", [("RCPT", "550 5.1.1 No such user"),
                                       ("DATA", "554 5.7.1 Message rejected")],
                         ids=["5xx-rcpt", "5xx-data"])
def test_permanent_refusal_fails_that_message_reports_it_and_alerts(setting, cli, mail, at, reply):
    config = setting()
    mail.inbox.add("ben@example.org", at, reply)

    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 1
    assert f"failed: ben@example.org: {reply}" in result.stderr
    assert "Traceback" not in result.output
    ben = by_address(outbox(config))["ben@example.org"]
    assert (ben.status, ben.last_error) == ("failed", reply)
    assert len(mail.inbox.to("amira@example.org")) == len(mail.inbox.to("chloe@example.org")) == 1

    alert, = mail.inbox.to("office@example.org")
    text = alert.get_body(("plain",)).get_content()
    assert "ben@example.org" in alert["Subject"]
    assert "Ben Lewis <ben@example.org>" in text and reply in text

    report = cli("report", "--format", "csv", config=config)
    delivery = {line.split(",")[1]: line.split(",")[10] for line in report.output.splitlines()[1:]}
    assert delivery == {"amira@example.org": "ok", "ben@example.org": f"failed: {reply}",
                        "chloe@example.org": "ok"}

    # A new starter whose address bounces is named in the next digest, though not overdue yet.
    roster = ROSTER + "Dan Bounce,dan@example.org,Cook,,yes\n"
    (config.parent / "staff.csv").write_text(roster)
    assert cli("staff", "import", str(config.parent / "staff.csv"), config=config).exit_code == 0
    mail.inbox.add("dan@example.org", at, reply)
    assert cli("tick", "--at", "2026-09-14T09:00+01:00", config=config).exit_code == 1

    cli("tick", "--at", "2026-09-23T09:00+01:00", config=config)  # the day after Ben's date
    digest, = mail.inbox.to("head@example.org")
    body = digest.get_body(("plain",)).get_content()
    assert "ben@example.org" in body and reply in body
    assert "dan@example.org" in body


# --- the server refuses our login ---------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("username", ["signoff", ""], ids=["wrong-password", "no-login"])
def test_authentication_failure_stops_at_once_without_spending_attempts(
        tmp_path, db_url, cli, monkeypatch, username):
    server = FaultServer(auth_required=True, auth_require_tls=False,
                         authenticator=password_checker("signoff", "right horse")).start()
    try:
        monkeypatch.setenv("SIGNOFF_TEST_SMTP_PASSWORD", "wrong horse")
        config = write_config(tmp_path, db_url, server.port)
        config.write_text(config.read_text().replace(
            "[mail]\n", f'[mail]\nusername = "{username}"\n'
                        'password_env = "SIGNOFF_TEST_SMTP_PASSWORD"\n'))
        assert cli("init", config=config).exit_code == 0
        (tmp_path / "staff.csv").write_text(ROSTER)
        assert cli("staff", "import", str(tmp_path / "staff.csv"), config=config).exit_code == 0

        refused = cli("tick", "--at", OPEN, config=config)
        assert refused.exit_code == 1
        line = one_line_error(refused)
        assert "mail server" in line and "wrong horse" not in line
        assert {(r.status, r.attempts, r.claimed_until) for r in outbox(config).values()} == {
            ("pending", 0, None)}
        assert len(server.inbox) == 0

        if username:  # the operator fixes the secret; everything goes once
            monkeypatch.setenv("SIGNOFF_TEST_SMTP_PASSWORD", "right horse")
            fixed = cli("tick", "--at", "2026-09-01T09:30+01:00", config=config)
            assert fixed.exit_code == 0, fixed.output
            assert server.inbox.recipients() == Counter(PEOPLE)
    finally:
        server.stop()


# --- killed mid-send ----------------------------------------------------------------------------

class Died(BaseException):
    """The process dying at a chosen moment (not an error anything should catch)."""


def requests_and_events(config: Path) -> tuple[list, list]:
    from workflow.models import Event, Request

    return table(config, Request), [event.kind for event in table(config, Event)]


def test_a_run_that_dies_between_a_send_and_its_record_sends_that_one_message_once_more(
        setting, cli, mail, monkeypatch):
    """The outcome of each email is committed before the next goes: a run that dies after the
    server took a message, before storing it, leaves everything else exact. Once its lease has
    run out a later tick sends that one message again (the server's copy cannot be known) and
    the rest once."""
    from workflow import outbox as outbox_mod
    from workflow.outbox import LEASE

    config = setting()
    real = outbox_mod.Sender._sent
    calls = []

    def dies_on_the_second(sender, job, composed):
        calls.append(job.id)
        if len(calls) == 2:
            raise Died()
        real(sender, job, composed)

    monkeypatch.setattr(outbox_mod.Sender, "_sent", dies_on_the_second)
    # Dead, the process hands nothing back (as a Ctrl-C would): its claim waits out the lease.
    monkeypatch.setattr(outbox_mod.Sender, "release", lambda sender, job: None)
    with pytest.raises(Died):
        cli("tick", "--at", OPEN, config=config)
    monkeypatch.undo()
    assert len(mail.inbox) == 2
    rows = outbox(config)
    assert sorted(row.status for row in rows.values()) == ["pending", "pending", "sent"]
    requests, kinds = requests_and_events(config)
    assert sum(r.reminded_at is not None for r in requests) == Counter(kinds)["invited"] == 1

    # Inside the lease the message on the wire is left alone (its run might still be going)...
    soon = cli("tick", "--at", (OPEN_AT + dt.timedelta(minutes=1)).isoformat(), config=config)
    assert soon.exit_code == 0, soon.output
    assert len(mail.inbox) == 3
    # ...and once it has run out it goes again: at most the one message twice.
    later = cli("tick", "--at", (OPEN_AT + LEASE + dt.timedelta(minutes=1)).isoformat(),
                config=config)
    assert later.exit_code == 0, later.output
    received = mail.inbox.recipients()
    assert set(received) == set(PEOPLE) and sorted(received.values()) == [1, 1, 2]
    assert {row.status for row in outbox(config).values()} == {"sent"}
    requests, kinds = requests_and_events(config)
    assert all(r.reminded_at is not None and r.overdue_at is not None for r in requests)
    assert Counter(kinds)["invited"] == 3


def test_each_claim_is_leased_from_when_it_is_made_not_from_the_start_of_the_run(
        setting, cli, mail, monkeypatch):
    """A paced run lasts hours: the lease of its hundredth message starts when that message is
    claimed. (The run's clock is made to move ten minutes at each look.)"""
    import itertools

    from workflow import outbox as outbox_mod
    from workflow.models import Outbox

    config = setting()
    looks = itertools.count(1)
    monkeypatch.setattr(outbox_mod.Sender, "clock",
                        lambda sender: sender.now + dt.timedelta(minutes=10) * next(looks))
    leases = {}
    with database(config) as db:
        def lease_on_the_wire(address: str) -> None:
            with db.read() as session:
                leases[address] = session.scalar(select(Outbox.claimed_until)
                                                 .where(Outbox.to_email == address))

        mail.inbox.on_data = lease_on_the_wire
        result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 0, result.output
    from workflow.outbox import LEASE

    last = leases["chloe@example.org"]
    assert last > OPEN_AT + LEASE + dt.timedelta(minutes=30), leases
    assert leases["amira@example.org"] < leases["ben@example.org"] < last


def test_a_composing_failure_stops_the_run_with_one_line_and_hands_its_claim_back(
        setting, cli, mail, monkeypatch):
    from workflow.models import Link

    people = [f"person{i:03}@example.org" for i in range(12)]
    config = setting(roster=roster_of(people))
    composing_fails_for(monkeypatch, "person007@example.org")
    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip() == ("signoff: cannot compose an email: RuntimeError: "
                                     "the template is broken; 5 waiting for a later tick")
    rows = outbox(config)
    sent = [row for row in rows.values() if row.status == "sent"]
    assert len(sent) == len(mail.inbox) == 7
    waiting = [row for row in rows.values() if row.status == "pending"]
    assert len(waiting) == 5
    assert all(row.claimed_until is None and row.claimed_by is None and row.attempts == 0
               for row in waiting)
    assert len(table(config, Link)) == len(sent)  # one link in each email sent, no other

    monkeypatch.undo()
    again = cli("tick", "--at", OPEN, config=config)
    assert again.exit_code == 0, again.output
    assert mail.inbox.recipients() == Counter({address: 1 for address in people})
    assert len(table(config, Link)) == 12


def composing_fails_for(monkeypatch, address: str) -> None:
    """Composing the email to `address` raises, as a broken template would."""
    from workflow import mailer

    real = mailer.make_message

    def broken(kind, to_name, to_email, ctx):
        if to_email == address:
            raise RuntimeError("the template is broken")
        return real(kind, to_name, to_email, ctx)

    monkeypatch.setattr(mailer, "make_message", broken)


def test_each_message_the_server_took_is_stored_before_the_next_can_be_taken(setting, cli, mail):
    """What makes a kill cost at most one duplicate: each message's outcome is committed before
    the server can take the next. The server checks as each message arrives; and one outcome is
    held up by a lock on its row, which the next message must wait for."""
    import threading

    from sqlalchemy import func

    from workflow.models import Outbox

    people = [f"person{i:03}@example.org" for i in range(30)]
    config = setting(roster=roster_of(people))
    behind, locked = [], threading.Event()

    def hold_the_row(address: str) -> None:
        with db.write_core() as conn:  # on SQLite, the whole database
            conn.execute(select(Outbox.id).where(Outbox.to_email == address).with_for_update())
            locked.set()
            time.sleep(0.5)

    def check(address: str) -> None:
        with db.read_core() as conn:
            stored = conn.execute(select(func.count()).select_from(Outbox)
                                  .where(Outbox.status == "sent")).scalar_one()
        if stored < len(mail.inbox):
            behind.append((address, len(mail.inbox), stored))
        if address == people[15]:
            threading.Thread(target=hold_the_row, args=(address,), daemon=True).start()
            locked.wait(10)

    mail.inbox.on_data = check
    with database(config) as db:
        result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 0, result.output
    assert sorted(mail.inbox.recipients()) == people
    assert behind == []


@pytest.mark.slow
def test_killed_mid_send_a_later_tick_sends_the_rest_with_at_most_one_twice(setting, mail):
    from workflow.outbox import LEASE

    people = [f"person{i:03}@example.org" for i in range(300)]
    roster = "name,email\n" + "".join(f"Person {i:03},{a}\n" for i, a in enumerate(people))
    config = setting(roster=roster)
    mail.inbox.data_delay = 0.02  # a slow server, so the kill lands mid-run

    tick = subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at", OPEN],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(mail.inbox) < 40 and time.monotonic() < deadline and tick.poll() is None:
        time.sleep(0.01)
    os.kill(tick.pid, signal.SIGKILL)
    tick.wait()
    before = len(mail.inbox)
    assert 40 <= before < 300

    # The killed tick's claims are leases; once they expire three ticks at once finish the job.
    later = (OPEN_AT + LEASE + dt.timedelta(minutes=1)).isoformat()
    ticks = [subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at", later],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [(t.communicate(timeout=120), t.returncode) for t in ticks]
    assert [code for _, code in results] == [0, 0, 0], results

    received = mail.inbox.recipients()
    assert set(received) == set(people)
    assert sum(received.values()) - len(people) <= 1
    assert {r.status for r in outbox(config).values()} == {"sent"}


@pytest.mark.slow
def test_interrupted_mid_send_a_tick_hands_its_claim_back_at_once(setting, mail):
    """Ctrl-C at the terminal: the tick hands back what it had claimed (no lease to wait out)
    and exits with one line; the next tick, straight after, sends the rest. As with a kill, the
    one message on the wire may go twice: whether the server took it is not known."""
    people = [f"person{i:03}@example.org" for i in range(300)]
    config = setting(roster=roster_of(people))
    mail.inbox.data_delay = 0.02  # a slow server, so the interrupt lands mid-run

    tick = subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at", OPEN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while len(mail.inbox) < 80 and time.monotonic() < deadline and tick.poll() is None:
        time.sleep(0.01)
    os.killpg(tick.pid, signal.SIGINT)  # as the terminal sends it: to the whole process group
    out, err = tick.communicate(timeout=60)
    assert tick.returncode != 0 and len(err.strip().splitlines()) == 1, err
    before = len(mail.inbox)
    assert 80 <= before < 300
    assert not [row for row in outbox(config).values() if row.claimed_until is not None
                and row.status in ("pending", "retrying")]

    mail.inbox.data_delay = 0
    again = run_signoff("tick", "--at", OPEN, config=config)
    assert again.returncode == 0, again.stderr
    received = mail.inbox.recipients()
    assert sorted(received) == people
    assert sum(received.values()) - len(people) <= 1


# --- what is no longer wanted when its turn comes ---------------------------------------------

def test_a_message_no_longer_wanted_when_its_turn_comes_is_not_sent(setting, cli, mail):
    """Queued while the server was down: by the time it is back, Amira has left (inactive), Ben
    is exempt, and a new cycle has opened. None of the three old reminders goes; this year's go
    to Ben and Chloe; Amira, back on the roster, is asked afresh."""
    from sqlalchemy import update

    from workflow.models import Request, Staff

    mail.stop()
    config = setting()
    assert cli("tick", "--at", OPEN, config=config).exit_code == 1
    (config.parent / "leavers.csv").write_text("name,email,active\nAmira Khan,amira@example.org,no\n")
    assert cli("staff", "import", str(config.parent / "leavers.csv"), config=config).exit_code == 0
    with database(config) as db, db.write() as session:  # as the console's "exempt" does
        ben = session.scalar(select(Staff.id).where(Staff.email == "ben@example.org"))
        session.execute(update(Request).where(Request.staff_id == ben).values(
            exempt_at=OPEN_AT, exempt_reason="long-term leave", closed_at=OPEN_AT,
            next_check_at=None))

    mail.start()
    next_year = cli("tick", "--at", "2027-09-01T09:00+01:00", config=config)
    assert next_year.exit_code == 0, next_year.output
    assert "(3 no longer needed)" in next_year.output
    assert mail.inbox.recipients() == Counter(["ben@example.org", "chloe@example.org"])
    old = [row for key, row in outbox(config).items() if row.created_at < OPEN_AT.replace(year=2027)]
    assert {row.status for row in old} == {"cancelled"}

    (config.parent / "back.csv").write_text("name,email,active\nAmira Khan,amira@example.org,yes\n")
    assert cli("staff", "import", str(config.parent / "back.csv"), config=config).exit_code == 0
    back = cli("tick", "--at", "2027-09-01T09:30+01:00", config=config)
    assert back.exit_code == 0, back.output
    assert mail.inbox.recipients() == Counter(PEOPLE)


def test_someone_made_inactive_while_their_reminder_waited_is_asked_afresh_when_back(
        setting, cli, mail):
    mail.stop()
    config = setting()
    assert cli("tick", "--at", OPEN, config=config).exit_code == 1
    roster = config.parent / "change.csv"
    roster.write_text("name,email,active\nAmira Khan,amira@example.org,no\n")
    assert cli("staff", "import", str(roster), config=config).exit_code == 0
    mail.start()
    sent = cli("tick", "--at", "2026-09-01T09:10+01:00", config=config)
    assert sent.exit_code == 0 and "(1 no longer needed)" in sent.output, sent.output
    assert sorted(mail.inbox.recipients()) == PEOPLE[1:]

    roster.write_text("name,email,active\nAmira Khan,amira@example.org,yes\n")
    assert cli("staff", "import", str(roster), config=config).exit_code == 0
    back = cli("tick", "--at", "2026-09-03T09:00+01:00", config=config)
    assert back.exit_code == 0, back.output
    assert mail.inbox.recipients() == Counter(PEOPLE)
    statuses = Counter(row.status for row in outbox(config).values())
    assert statuses == Counter({"sent": 3, "cancelled": 1})
