"""Ticks that overlap: run twice, or three `signoff tick` processes at the same moment, and every
message still goes exactly once — on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter

import pytest
from sqlalchemy import text

from conftest import ROSTER, SIGNOFF

STAFF = ["amira@example.org", "ben@example.org", "chloe@example.org"]
HEAD = "head@example.org"


def recipients(inbox) -> Counter:
    with inbox.lock:
        return Counter(m["To"].addresses[0].addr_spec for m in inbox.messages)


def ticks_at_once(config, at: str, n: int = 3) -> list[subprocess.CompletedProcess]:
    """Start n real `signoff tick` processes together and wait for them all."""
    procs = [subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at", at],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=config.parent) for _ in range(n)]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def assert_all_ok(results) -> None:
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr


def test_tick_twice_sends_nothing_twice(setup, cli, smtp):
    config = setup()
    for at in ("2026-09-01T08:00+01:00", "2026-09-01T08:00+01:00", "2026-09-01T16:00+01:00"):
        assert cli("tick", "--at", at, config=config).exit_code == 0
    assert recipients(smtp.inbox) == Counter(STAFF)
    for at in ("2026-09-08T08:00+01:00", "2026-09-08T08:00+01:00", "2026-09-09T08:00+01:00"):
        assert cli("tick", "--at", at, config=config).exit_code == 0
    assert recipients(smtp.inbox) == Counter({a: 2 for a in STAFF})
    for at in ("2026-09-23T08:00+01:00", "2026-09-23T08:00+01:00", "2026-09-23T20:00+01:00"):
        assert cli("tick", "--at", at, config=config).exit_code == 0
    assert recipients(smtp.inbox) == Counter({**{a: 3 for a in STAFF}, HEAD: 1})


@pytest.mark.slow
def test_three_ticks_at_once_send_every_message_exactly_once(setup, smtp):
    config = setup()
    results = ticks_at_once(config, "2026-09-01T08:00+01:00")
    assert_all_ok(results)
    assert recipients(smtp.inbox) == Counter(STAFF)
    assert sum(int(r.stdout.split(" sent")[0].rsplit(" ", 1)[1]) for r in results) == 3
    assert sum("opened social-media 2026" in r.stdout for r in results) == 1
    assert sum(int(re.search(r"(-?\d+) new requests", r.stdout)[1]) for r in results) == 3

    # The day after the date the reminders asked for: the latest follow-up for each person and
    # the first digest, once each.
    assert_all_ok(ticks_at_once(config, "2026-09-23T08:00+01:00"))
    assert recipients(smtp.inbox) == Counter({**{a: 2 for a in STAFF}, HEAD: 1})


@pytest.mark.slow
def test_three_ticks_at_once_for_two_hundred_people(setup, smtp):
    people = [f"Person {i:03d},person{i:03d}@example.org,Practitioner,,yes" for i in range(200)]
    config = setup(ROSTER.splitlines()[0] + "\n" + "\n".join(people) + "\n")
    assert_all_ok(ticks_at_once(config, "2026-09-01T08:00+01:00"))
    counts = recipients(smtp.inbox)
    assert len(counts) == 200
    assert set(counts.values()) == {1}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.slow
def test_a_tick_that_finds_another_opening_the_cycle_waits_and_carries_on(setup, smtp):
    """PostgreSQL runs two ticks' opening of the cycle side by side (SQLite queues whole write
    transactions): the second waits for the first's row and must then use it, not fail."""
    from workflow import config as config_mod
    from workflow.app import create_app
    from workflow.models import Cycle

    config = setup()
    svc = create_app(config_mod.load(config)).extensions["signoff"]
    try:
        with svc.db.write() as other:  # another tick, half-way through opening the 2026 cycle
            policy = svc.library(other).policies[0]
            opens = policy.calendar.cycle_opens(2026)
            other.add(Cycle(policy_id=policy.id, year=2026, opens_at=opens, created_at=opens))
            other.flush()
            proc = subprocess.Popen([*SIGNOFF, "--config", str(config), "tick", "--at",
                                     "2026-09-01T08:00+01:00"], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=config.parent)
            with svc.db.read() as watcher:  # until the tick is blocked on our uncommitted row
                deadline = time.monotonic() + 60
                while not watcher.scalar(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()")):
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "the tick never reached the cycle"
                    watcher.rollback()
                    time.sleep(0.05)
        out, err = proc.communicate(timeout=120)
    finally:
        svc.db.dispose()
    assert proc.returncode == 0, err
    assert "opened" not in out  # the other tick opened it
    assert recipients(smtp.inbox) == Counter(STAFF)
