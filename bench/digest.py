"""Digest: render the head teacher's digest (query, text and HTML) with 5,000 overdue people."""

from __future__ import annotations

import datetime as dt
import time

from . import world

STAFF = 5_000


def run(db_url: str | None = None) -> dict:
    from workflow.digest import digest_context
    from workflow.mailer import make_message

    w = world.build(STAFF, requests_sent_at=world.OPEN, db_url=db_url)
    try:
        app = w.app()
        svc = app.extensions["signoff"]
        now = world.OPEN + dt.timedelta(days=30)
        with app.app_context(), svc.db.read() as session:
            started = time.perf_counter()
            ctx = digest_context(svc, session, now)
            message = make_message("digest", "Helen Head", "head@example.org", ctx)
            size = len(message.as_bytes())
            elapsed = time.perf_counter() - started
        svc.db.dispose()
    finally:
        w.remove()
    assert len(ctx["overdue"]) == STAFF
    return {"s": elapsed, "bytes": size}


if __name__ == "__main__":
    print(run())
