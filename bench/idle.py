"""Idle tick: everyone has had their first reminder of each of three policies and nothing is due.
One tick after start-up must be quick, and the number of SQL statements it issues must not grow
with the staff count.

Statements are counted by the database itself: SQLite's trace callback on every connection the
tick opens, PostgreSQL's statement log; so those the outbox runs on a raw DB-API connection count
alongside those sent through SQLAlchemy."""

from __future__ import annotations

import datetime as dt
import time
from contextlib import nullcontext

from sqlalchemy import event

from . import world

POLICIES = 3  # each person asked for each: the idle tick stays flat in staff and in policies
SENT_AT = world.OPEN
IDLE_AT = world.OPEN + dt.timedelta(days=2, hours=2)  # Thursday 10:00: nothing due


def measure(staff: int, postgres=None) -> tuple[float, int]:
    """(seconds for the first tick after start-up, SQL statements it issued)."""
    from workflow import tick

    url = postgres.new_url() if postgres else None
    w = world.build(staff, requests_sent_at=SENT_AT, db_url=url, policies=POLICIES)
    try:
        counting = postgres.statements(url) if postgres else nullcontext([])
        with counting as statements:
            app = w.app()
            svc = app.extensions["signoff"]
            if not postgres:
                svc.db.dispose()
                event.listen(svc.db.engine, "connect", lambda dbapi_conn, record:
                             dbapi_conn.set_trace_callback(statements.append))
            with app.app_context():
                started = time.perf_counter()
                result = tick.run(svc, IDLE_AT)
                elapsed = time.perf_counter() - started
            svc.db.dispose()
        assert result.queued == 0 and result.delivery.sent == 0, result.summary()
        return elapsed, (statements[0] if postgres else len(statements))
    finally:
        w.remove()


def run(postgres=None) -> dict:
    small_s, small_n = measure(5_000, postgres)
    big_s, big_n = measure(50_000, postgres)
    return {"s_5000": small_s, "statements_5000": small_n, "s_50000": big_s,
            "statements_50000": big_n}


if __name__ == "__main__":
    print(run())
