"""What the plan says is what happens, at a local authority's scale: 50,000 staff and three
policies, each person reminded on the opening morning (a paced send: each at its own second).

- Re-planning after the office changes a policy's schedule (escalate_after_days 21 to 35): every
  open request of the policy derived again, in the console's save (target: under 2 s).
- `signoff plan --format csv` over eight weeks: a row per policy in each email and per digest
  (target: under 5 s).
"""

from __future__ import annotations

import datetime as dt
import io
import time
from contextlib import redirect_stdout

from . import world

POLICIES = 3


def run(staff: int = 50_000, db_url: str | None = None) -> dict[str, float]:
    from sqlalchemy import bindparam, select, update

    from workflow import requests, timeline
    from workflow.models import Policy, Request, UTCDateTime

    w = world.build(staff, requests_sent_at=world.OPEN, db_url=db_url, policies=POLICIES)
    try:
        app = w.app()
        svc = app.extensions["signoff"]
        with svc.db.write_core() as conn:  # as a paced opening morning leaves them
            ids = conn.scalars(select(Request.id).order_by(Request.id)).all()
            conn.execute(update(Request.__table__).where(Request.id == bindparam("rid"))
                         .values(reminded_at=bindparam("at", type_=UTCDateTime()),
                                 last_message_at=bindparam("at", type_=UTCDateTime())),
                         [{"rid": rid, "at": world.OPEN + dt.timedelta(seconds=i % 7200)}
                          for i, rid in enumerate(ids)])
        now = world.OPEN + dt.timedelta(days=2, hours=4)
        with svc.db.write() as session:
            policy = session.scalars(select(Policy).order_by(Policy.id).limit(1)).one()
            policy.schedule = {"escalate_after_days": 35}
            session.flush()
            started = time.perf_counter()
            changed = requests.after_change(session, svc.library(session), now,
                                            policy_ids=[policy.id])
            replan_s = time.perf_counter() - started
        assert changed == staff, changed  # every open request of the policy moved
        out = io.StringIO()
        started = time.perf_counter()
        with svc.db.read() as session, redirect_stdout(out):
            for line in timeline.render_csv(svc, session, now, now + dt.timedelta(weeks=8)):
                print(line)
        plan_s = time.perf_counter() - started
        rows = out.getvalue().count("\n") - 1
        svc.db.dispose()
        return {"replan_s": replan_s, "changed": changed, "plan_s": plan_s, "plan_rows": rows}
    finally:
        w.remove()
