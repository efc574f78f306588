"""(2) Idle tick: everyone has had their first reminder and nothing is due. One tick after start-up
must be quick, and the number of SQL statements it issues must not grow with the staff count."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import event

from . import world

SENT_AT = world.OPEN
IDLE_AT = world.OPEN + dt.timedelta(days=2, hours=2)  # Thursday 10:00: nothing due


def measure(staff: int) -> tuple[float, int]:
    """(seconds for the first tick after start-up, SQL statements it issued)."""
    from workflow import tick

    w = world.build(staff, requests_sent_at=SENT_AT)
    try:
        app = w.app()
        svc = app.extensions["signoff"]
        # Counted by SQLite itself, on every connection the tick opens: statements sent through
        # SQLAlchemy and those the outbox runs on a raw DB-API connection alike.
        statements = []
        svc.db.dispose()
        event.listen(svc.db.engine, "connect",
                     lambda dbapi_conn, record: dbapi_conn.set_trace_callback(statements.append))
        with app.app_context():
            started = time.perf_counter()
            result = tick.run(svc, IDLE_AT)
            elapsed = time.perf_counter() - started
        svc.db.dispose()
        assert result.queued == 0 and result.delivery.sent == 0, result.summary()
        return elapsed, len(statements)
    finally:
        w.remove()


def run() -> dict:
    small_s, small_n = measure(5_000)
    big_s, big_n = measure(50_000)
    return {"s_5000": small_s, "statements_5000": small_n, "s_50000": big_s,
            "statements_50000": big_n}


if __name__ == "__main__":
    print(run())
