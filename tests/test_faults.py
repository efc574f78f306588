"""Delivery you can trust: a real SMTP server that is down, refuses, stalls, drops the line, rejects
our login, or outlives a killed tick — on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import ROSTER, SIGNOFF, initialise, run_signoff, write_config
from smtp_faults import FaultServer, password_checker

OPEN = "2026-09-01T09:00+01:00"
OPEN_AT = dt.datetime.fromisoformat(OPEN)
PEOPLE = ["amira@example.org", "ben@example.org", "chloe@example.org"]


@pytest.fixture
def mail():
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def setting(tmp_path, db_url, mail, cli):
    """A configured setting pointed at the fault server (or `port`), roster imported."""
    def make(roster: str = ROSTER, port: int | None = None, timeout: int | None = None,
             mail_extra: str = "", **overrides) -> Path:
        path = write_config(tmp_path, db_url, port or mail.port, **overrides)
        text = path.read_text()
        if timeout is not None:
            text = text.replace("timeout_seconds = 5", f"timeout_seconds = {timeout}")
        path.write_text(text.replace("[mail]\n", "[mail]\n" + mail_extra))
        return initialise(cli, path, roster)

    return make


def outbox(config: Path) -> dict[str, object]:
    """The outbox rows by key, read straight from the database."""
    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Outbox

    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return {row.key: row for row in session.scalars(select(Outbox))}
    finally:
        db.dispose()


def table(config: Path, model) -> list:
    from workflow import config as config_mod
    from workflow.db import Database

    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return list(session.scalars(select(model)))
    finally:
        db.dispose()


def by_address(rows) -> dict[str, object]:
    return {row.to_email: row for row in rows.values() if row.kind == "reminder"}


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


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
    ("RCPT", "451 4.7.1 Greylisted, try again later"),
    ("DATA", "452 4.3.1 Insufficient system storage"),
    ("DATA", "stall"),  # longer than [mail] timeout_seconds
    ("DATA", "drop"),   # the connection goes mid-message
], ids=["4xx-rcpt", "4xx-data", "timeout", "dropped"])
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
    delay1 = ben.next_attempt_at - OPEN_AT
    # Exponential backoff from 5 minutes, with ±25% jitter.
    assert dt.timedelta(minutes=3.75) <= delay1 <= dt.timedelta(minutes=6.25)
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
    assert dt.timedelta(minutes=7.5) <= delay2 <= dt.timedelta(minutes=12.5)

    third = cli("tick", "--at", ben.next_attempt_at.isoformat(), config=config)
    assert third.exit_code == 0, third.output
    ben = by_address(outbox(config))["ben@example.org"]
    assert (ben.status, ben.attempts) == ("sent", 3)
    assert mail.inbox.recipients() == Counter(PEOPLE)


def test_concurrent_ticks_make_one_retry_attempt(setting, cli, mail):
    config = setting()
    mail.inbox.add("ben@example.org", "RCPT", "451 4.7.1 Greylisted, try again later")
    assert cli("tick", "--at", OPEN, config=config).exit_code == 1
    retry_at = by_address(outbox(config))["ben@example.org"].next_attempt_at.isoformat()

    ticks = [subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at", retry_at],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [t.communicate(timeout=60) for t in ticks]
    assert all("Traceback" not in err for _, err in outputs)
    ben = by_address(outbox(config))["ben@example.org"]
    assert ben.attempts == 2  # one attempt between the three ticks
    assert mail.inbox.hits[("ben@example.org", "RCPT", "451 4.7.1 Greylisted, try again later")] == 2


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

    cli("tick", "--at", "2026-09-22T09:00+01:00", config=config)
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


def test_a_run_that_dies_after_the_server_took_a_batch_is_finished_later_not_sent_again(
        setting, cli, mail, monkeypatch):
    from workflow import outbox as outbox_mod

    config = setting()

    def dies(*args, **kwargs):
        raise Died()

    monkeypatch.setattr(outbox_mod, "_follow_through", dies)
    with pytest.raises(Died):
        cli("tick", "--at", OPEN, config=config)
    monkeypatch.undo()

    # The server took all three; the rows say so, and nothing that follows was written.
    assert sorted(mail.inbox.recipients()) == PEOPLE
    assert {row.status for row in outbox(config).values()} == {"handed"}
    requests, kinds = requests_and_events(config)
    assert all(r.reminded_at is None for r in requests) and "invited" not in kinds
    # The report already counts them as sent: the server has them.
    report = cli("report", "--format", "csv", "--at", OPEN, config=config)
    rows = list(csv.DictReader(io.StringIO(report.output)))
    assert [(r["reminders_sent"], r["delivery"]) for r in rows] == [("1", "ok")] * 3

    # A run inside the lease leaves them to the run that might still be going...
    soon = cli("tick", "--at", (OPEN_AT + dt.timedelta(minutes=1)).isoformat(), config=config)
    assert soon.exit_code == 0, soon.output
    assert {row.status for row in outbox(config).values()} == {"handed"}

    # ...and once it has expired, one finishes them: sent, the clocks started, logged once each.
    from workflow.outbox import LEASE

    later = OPEN_AT + LEASE + dt.timedelta(minutes=1)
    finish = cli("tick", "--at", later.isoformat(), config=config)
    assert finish.exit_code == 0, finish.output
    assert sorted(mail.inbox.recipients()) == PEOPLE  # nobody had a second email
    assert {row.status for row in outbox(config).values()} == {"sent"}
    requests, kinds = requests_and_events(config)
    assert all(r.reminded_at == OPEN_AT for r in requests)
    assert all(r.overdue_at is not None and r.next_check_at > OPEN_AT for r in requests)
    assert Counter(kinds)["invited"] == 3


def test_a_claim_about_to_run_out_is_handed_back_and_sent_once_under_a_new_one(
        setting, cli, mail, monkeypatch, caplog):
    import itertools
    import logging

    from workflow import outbox as outbox_mod
    from workflow.models import Link

    caplog.set_level(logging.INFO, logger="signoff.outbox")

    config = setting()
    # Each look at the clock finds four minutes gone, as with a very slow server: the third
    # message would start with under LEASE_MARGIN of its claim left.
    ticks = itertools.count()
    monkeypatch.setattr(outbox_mod._Run, "clock",
                        lambda run: run.now + dt.timedelta(minutes=4) * next(ticks))
    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 0, result.output

    assert mail.inbox.recipients() == Counter({address: 1 for address in PEOPLE})
    rows = by_address(outbox(config))
    assert {row.status for row in rows.values()} == {"sent"}
    assert "handing 1 back to claim again" in caplog.text
    # The link made for the first claim of the one handed back was never sent, so it was dropped:
    # each person has the one link their email carries.
    links = Counter(link.request_id for link in table(config, Link))
    assert sorted(links.values()) == [1, 1, 1]


def test_a_composing_failure_stops_the_run_with_one_line_and_hands_its_claims_back(
        setting, cli, mail, monkeypatch):
    people = [f"person{i:03}@example.org" for i in range(120)]  # enough for the helper process
    config = setting(roster=roster_of(people))
    # In the second batch, composed by the helper.
    composing_fails_for(monkeypatch, "person070@example.org")
    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip() == ("signoff: cannot compose an email: RuntimeError: "
                                     "the template is broken")
    rows = outbox(config)
    sent = [row for row in rows.values() if row.status == "sent"]
    assert len(sent) == len(mail.inbox) == outbox_mod_batch()
    waiting = [row for row in rows.values() if row.status == "pending"]
    assert len(waiting) == 120 - len(sent)
    assert all(row.claimed_until is None and row.attempts == 0 for row in waiting)

    monkeypatch.undo()
    again = cli("tick", "--at", OPEN, config=config)
    assert again.exit_code == 0, again.output
    assert mail.inbox.recipients() == Counter({address: 1 for address in people})


def test_a_run_that_stops_hands_back_every_claim_made_ahead_and_drops_their_links(
        setting, cli, mail, monkeypatch):
    """Claims are made batches ahead (on PostgreSQL by a turn still running while a batch is
    sent): a run stopping in its third batch hands all of them back, and no unsent link is left."""
    from workflow.models import Link

    people = [f"person{i:03}@example.org" for i in range(260)]
    config = setting(roster=roster_of(people))
    composing_fails_for(monkeypatch, "person120@example.org")  # the third batch
    result = cli("tick", "--at", OPEN, config=config)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == ("signoff: cannot compose an email: RuntimeError: "
                                     "the template is broken")
    rows = outbox(config)
    sent = [row for row in rows.values() if row.status == "sent"]
    assert len(sent) == len(mail.inbox) == 2 * outbox_mod_batch()
    waiting = [row for row in rows.values() if row.status == "pending"]
    assert len(waiting) == 260 - len(sent)
    assert all(row.claimed_until is None and row.claimed_by is None for row in waiting)
    assert len(table(config, Link)) == len(sent)  # one link in each email sent, no other

    monkeypatch.undo()
    again = cli("tick", "--at", OPEN, config=config)
    assert again.exit_code == 0, again.output
    assert mail.inbox.recipients() == Counter({address: 1 for address in people})
    assert len(table(config, Link)) == 260


def roster_of(addresses: list[str]) -> str:
    return "name,email\n" + "".join(f"Person {i:03},{a}\n" for i, a in enumerate(addresses))


def composing_fails_for(monkeypatch, address: str) -> None:
    """Composing the email to `address` raises, as a broken template would."""
    from workflow import compose

    real = compose.make_wire

    def broken(kind, to_name, to_email, ctx):
        if to_email == address:
            raise RuntimeError("the template is broken")
        return real(kind, to_name, to_email, ctx)

    monkeypatch.setattr(compose, "make_wire", broken)


def outbox_mod_batch() -> int:
    from workflow.outbox import BATCH

    return BATCH


def test_each_message_the_server_took_is_stored_before_the_next_can_be_taken(setting, cli, mail):
    """What makes a kill cost at most one duplicate: each message's outcome is stored (on
    PostgreSQL, while the next one's MAIL and RCPT go over the wire) before the server can take
    the next. The server checks as each message arrives, over more than a batch; and one outcome
    is held up by a lock on its row, which the next message must wait for."""
    import threading

    from sqlalchemy import func

    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Outbox

    people = [f"person{i:03}@example.org" for i in range(120)]
    config = setting(roster=roster_of(people))
    db = Database(config_mod.load(config).database.url)
    behind, locked = [], threading.Event()

    def hold_the_row(address: str) -> None:
        with db.write_core() as conn:  # on SQLite, the whole database
            conn.execute(select(Outbox.id).where(Outbox.to_email == address).with_for_update())
            locked.set()
            time.sleep(0.5)

    def check(address: str) -> None:
        with db.read_core() as conn:
            stored = conn.execute(select(func.count()).select_from(Outbox)
                                  .where(Outbox.status.in_(["handed", "sent"]))).scalar_one()
        if stored < len(mail.inbox):
            behind.append((address, len(mail.inbox), stored))
        if address == people[60]:
            threading.Thread(target=hold_the_row, args=(address,), daemon=True).start()
            locked.wait(10)

    mail.inbox.on_data = check
    try:
        result = cli("tick", "--at", OPEN, config=config)
    finally:
        db.dispose()
    assert result.exit_code == 0, result.output
    assert sorted(mail.inbox.recipients()) == people
    assert behind == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite makes them in-process
def test_a_lost_turns_process_stops_the_run_and_a_later_tick_sends_the_rest_once(
        setting, cli, mail):
    """On PostgreSQL the turns between batches (what follows from the batch sent, the next claims)
    are made by a process of their own. If it dies the run stops with one clear line, what was
    sent stays recorded, and once the claims' leases expire a later tick sends the rest, once."""
    import multiprocessing

    from workflow.outbox import LEASE

    people = [f"person{i:03}@example.org" for i in range(300)]  # more than the first claims
    config = setting(roster=roster_of(people))
    killed = []

    def kill_the_turns(address: str) -> None:
        if address == people[70]:
            for child in multiprocessing.active_children():
                if child.name == "signoff-turns":
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)

    mail.inbox.on_data = kill_the_turns
    result = cli("tick", "--at", OPEN, config=config)
    assert killed and result.exit_code == 1
    assert result.output == "signoff: the turns process stopped unexpectedly (exit code -9)\n"
    assert 70 < len(mail.inbox) < 300

    mail.inbox.on_data = None
    later = (OPEN_AT + LEASE + dt.timedelta(minutes=1)).isoformat()
    again = cli("tick", "--at", later, config=config)
    assert again.exit_code == 0, again.output
    received = mail.inbox.recipients()
    assert sorted(received) == people and set(received.values()) == {1}
    assert {r.status for r in outbox(config).values()} == {"sent"}


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


def test_interrupted_mid_send_a_tick_hands_its_claims_back_at_once(setting, mail):
    """Ctrl-C at the terminal reaches the tick and its helper processes alike: the helpers leave it
    to the tick, which records what went, hands back what it had claimed (no lease to wait out),
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
