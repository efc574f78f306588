"""A setting to measure: a config in a temporary folder, the database migrated, and thousands of
staff (and, for the idle tick, their requests) bulk-inserted with SQLAlchemy core for speed."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ports import free_port
from sqlalchemy import insert, select

from workflow import config as config_mod
from workflow import library, resources
from workflow import policies as policies_mod
from workflow.app import create_app
from workflow.db import upgrade
from workflow.models import Cycle, Request, Staff

OPEN = dt.datetime(2026, 9, 1, 7, 0, tzinfo=dt.timezone.utc)  # 08:00 London, Tuesday

CONFIG = """\
[setting]
name = "Benchmark Borough Nursery"
timezone = "Europe/London"
base_url = "https://signoff.example.org"

[head_teacher]
name = "Helen Head"
email = "head@example.org"

[database]
url = "{db_url}"

[mail]
server = "127.0.0.1"
port = {smtp_port}
sender = "Policy Reminders <noreply@example.org>"
admin_email = "office@example.org"
timeout_seconds = 30
{limits}
[schedule]
annual_open = "09-01"
send_time = "08:00"
reminder_after_days = [7, 14]
escalate_after_days = 21
digest_every_days = 7

[[policy]]
slug = "social-media"
title = "Use of Social Media Policy"
file = "policy.md"
reminder_note = "Check your privacy settings are still set high."
statements = ["I have re-read the policy.", "No child or parent is my online friend or follower."]
"""

# More policies for everyone, on the same schedule: on the opening day each person has them all
# due at once, in one email.
MORE_POLICY = """
[[policy]]
slug = "policy-{n}"
title = "Benchmark Policy {n}"
text = "# Benchmark Policy {n}\\n\\nRead this.\\n"
statements = ["I have read it."]
"""


@dataclass
class World:
    folder: Path
    config_path: Path

    def app(self):
        return create_app(config_mod.load(self.config_path))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def build(staff: int, smtp_port: int = 25, *, requests_sent_at: dt.datetime | None = None,
          db_url: str | None = None, max_per_minute: int = 0, policies: int = 1) -> World:
    """A migrated database with `staff` people and `policies` policies for everyone. With
    `requests_sent_at`, each person already has this cycle's request of each policy, with
    the first reminder sent then (the state of an idle tick). The provider's limits are off unless
    `max_per_minute` is given (the pacing benchmark)."""
    folder = Path(tempfile.mkdtemp(prefix="signoff-bench-"))
    shutil.copy(resources.path("policies") / "social-media.md", folder / "policy.md")
    path = folder / "signoff.toml"
    path.write_text(CONFIG.format(db_url=db_url or f"sqlite:///{folder / 'signoff.db'}",
                                  smtp_port=smtp_port,
                                  limits=f"max_per_minute = {max_per_minute}\n" if max_per_minute
                                  else "")
                    + "".join(MORE_POLICY.format(n=n) for n in range(2, policies + 1)))
    world = World(folder, path)
    app = world.app()
    svc = app.extensions["signoff"]
    upgrade(svc.db.url)
    now = OPEN - dt.timedelta(days=30)
    with svc.db.write() as session:
        library.seed(session, svc.config, now)
        setting_id = policies_mod.setting_id(session)
        session.execute(insert(Staff), [
            {"setting_id": setting_id, "email": f"person{i:06}@example.org",
             "name": f"Person {i:06}", "role": "Practitioner", "start_date": None, "active": True,
             "created_at": now, "updated_at": now} for i in range(staff)])
    if requests_sent_at is not None:
        _requests(svc, requests_sent_at)
    # As the tick does after adding thousands of rows (tick.ANALYZE_AFTER): PostgreSQL's planner
    # would otherwise cost every query as if these tables were empty.
    svc.db.refresh_statistics("staff", "request", "cycle", "policy")
    svc.db.dispose()
    return world


def _requests(svc, sent_at: dt.datetime) -> None:
    """This cycle's request of every policy for everyone, the first reminder sent at `sent_at`."""
    from workflow import planner

    with svc.db.write() as session:
        ids = session.scalars(select(Staff.id).order_by(Staff.id)).all()
        for policy in svc.library(session).policies:
            cal = policy.calendar
            year = cal.cycle_year(sent_at)
            cycle = Cycle(policy_id=policy.id, year=year, opens_at=cal.cycle_opens(year),
                          created_at=sent_at)
            session.add(cycle)
            session.flush()
            state = planner.RequestState(cycle_opens=cycle.opens_at, start_date=None,
                                         stage_sent=0, reminded_at=sent_at,
                                         last_message_at=sent_at)
            next_check = planner.next_check(state, cal, sent_at)
            overdue = planner.overdue_at(sent_at, cal)
            session.execute(insert(Request), [
                {"cycle_id": cycle.id, "staff_id": sid, "created_at": sent_at, "stage_sent": 0,
                 "reminded_at": sent_at, "last_message_at": sent_at,
                 "next_check_at": next_check, "overdue_at": overdue} for sid in ids])


def opening_day(staff: int, db_url: str | None = None, max_per_minute: int = 0,
                policies: int = 1):
    """The opening-day tick for `staff` people and `policies` policies, sending to a sink in its
    own process: (the tick's result, its wall time in seconds, each message's arrival time at the
    sink). Each person gets one email, however many policies."""
    from workflow import tick

    from .sink import Sink

    port = free_port()
    w = build(staff, port, db_url=db_url, max_per_minute=max_per_minute, policies=policies)
    sink = Sink(port)
    try:
        app = w.app()
        svc = app.extensions["signoff"]
        with app.app_context():
            started = time.perf_counter()
            result = tick.run(svc, OPEN)
            elapsed = time.perf_counter() - started
        svc.db.dispose()
    finally:
        received = sink.stop()
        w.remove()
    assert result.queued == staff * policies, result.summary()
    assert result.delivery.sent == staff and received == staff, (result.summary(), received)
    return result, elapsed, sink.arrivals
