"""One tick: from the database and `now`, do everything that is due, then send it.

Open this year's cycles, ask every active person without a request for one (new starters included),
queue the reminders and follow-ups that have come due, queue the head teacher's digest, deliver.
Every step is idempotent and keyed, so cron, a scheduler and a person at the terminal can all run it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, update

from . import digest, events, library, outbox, pacing, planner, requests, reviews, roster
from .models import Cycle, Request, Staff, TickRun, UTCDateTime
from .services import Services

log = logging.getLogger("signoff.tick")
BATCH = 500
# Rows added in one step after which PostgreSQL's statistics on them are refreshed before the
# next step reads them (an opening day, a large roster's first tick); see refresh_statistics().
ANALYZE_AFTER = 1000


@dataclass
class TickResult:
    at: dt.datetime
    opened: list[str] = field(default_factory=list)
    new_requests: int = 0
    dropped: int = 0  # requests closed because they no longer apply (audiences changed)
    queued: int = 0
    digest_queued: bool = False
    delivery: outbox.RunResult = field(default_factory=outbox.RunResult)

    @property
    def ok(self) -> bool:
        """Nothing failed and nothing stopped the run. Mail held back by the provider's daily
        limit is not a failure: it goes with a later tick."""
        d = self.delivery
        return d.stopped is None and d.retrying == 0 and d.failed == 0

    def summary(self) -> str:
        d = self.delivery
        parts = [f"tick at {self.at.isoformat(timespec='seconds')}:"]
        if self.opened:
            parts.append(f"opened {', '.join(self.opened)};")
        if self.dropped:
            parts.append(f"{self.dropped} no longer apply;")
        parts.append(f"{self.new_requests} new requests, {self.queued} queued"
                     f"{' (with digest)' if self.digest_queued else ''}, {d.sent} sent,"
                     f" {d.retrying} retrying, {d.failed} failed")
        if d.cancelled:
            parts.append(f"({d.cancelled} no longer needed)")
        if d.waiting_line:
            parts.append(f"— {d.waiting_line} (the mail provider's limits)")
        elif d.waiting:
            parts.append(f"— {d.waiting:,} waiting for a later tick")
        if d.stopped:
            parts.append(f"— stopped: {d.stopped}")
        return " ".join(parts)


def run(svc: Services, now: dt.datetime, stopping: threading.Event | None = None) -> TickResult:
    """Everything due at `now`; `stopping` (set by the scheduler's shutdown) ends the sending
    after the message in hand."""
    mail = svc.config.mail
    result = TickResult(at=now)
    with svc.db.write() as session:
        run_row = TickRun(started_at=dt.datetime.now(dt.timezone.utc), at=now)
        session.add(run_row)
        library.seed(session, svc.config, now)  # a database `init` has not seeded yet
        lib = svc.library(session)
        cycles = _open_cycles(svc, session, lib, now, result)
        result.new_requests = _ask_everyone(svc, session, lib.setting_id, cycles, now)
        result.dropped = _follow_audiences(svc, session, lib, cycles, now)
        roster.forget_uploads(session, now)
    if result.new_requests >= ANALYZE_AFTER:
        svc.db.refresh_statistics("request", "staff")
    result.queued = _queue_due(svc, lib, [c.id for c in cycles], now)
    if result.queued >= ANALYZE_AFTER:
        svc.db.refresh_statistics("request", "outbox")
    with svc.db.write() as session:
        result.digest_queued = _queue_digest(svc, session, lib, now)
        reviews.queue(svc, session, lib, now)  # the head teacher's reminders of policy reviews
    if pacing.limited(mail.max_per_minute, mail.max_per_day):
        with svc.db.read() as session:
            count, line = outbox.waiting(svc, session, now)
        if count > 1:  # a paced run may take hours: say at its start when it will end
            log.info("%s", line)
    result.delivery = outbox.deliver(svc, now, stopping)
    with svc.db.write() as session:
        session.execute(update(TickRun).where(TickRun.id == run_row.id).values(
            finished_at=dt.datetime.now(dt.timezone.utc), ok=result.ok, summary=result.summary()))
    return result


def _queue_digest(svc: Services, session, lib: library.Library, now: dt.datetime) -> bool:
    """The head teacher's digest, if one is due. Keyed by the day it goes, not the day it was
    due: after downtime, one digest, not a backlog. One at a time: while a digest waits (the
    server asked us to slow down), the next is not queued beside it, or both would go at once."""
    due = digest.next_due(session, lib, now)
    if due is None or due > now or outbox.digest_waiting(session):
        return False
    head = svc.config.head_teacher
    outbox.enqueue(session, svc.db.insert, key=f"digest:{lib.calendar.local_date(now).isoformat()}",
                   kind="digest", to_email=head.email, to_name=head.name, now=now)
    return True


def _open_cycles(svc: Services, session, lib: library.Library, now: dt.datetime,
                 result: TickResult) -> list[Cycle]:
    """Each active policy's current cycle, opened if this is its first tick."""
    cycles = []
    for entry in lib.active:
        year = entry.cycle_year(now)
        find = select(Cycle).filter_by(policy_id=entry.id, year=year)
        cycle = session.scalars(find).first()
        if cycle is None:
            # ON CONFLICT DO NOTHING: on PostgreSQL another tick may open it at the same moment.
            opened = session.execute(svc.db.insert(Cycle.__table__).values(
                policy_id=entry.id, year=year, opens_at=entry.calendar.cycle_opens(year),
                created_at=now)).rowcount
            cycle = session.scalars(find).one()
            if opened:
                events.record(session, "cycle_opened", now, policy=entry.slug, year=year)
                result.opened.append(f"{entry.slug} {year}")
        cycles.append(cycle)
    return cycles


def _ask_everyone(svc: Services, session, setting_id: int, cycles: list[Cycle],
                  now: dt.datetime) -> int:
    """A request for every active person in each policy's audience who has none in its cycle (new
    starters included), due to be looked at now: _queue_due() then plans each one."""
    return sum(requests.ask_missing(session, svc.db.insert, setting_id, cycle, now)
               for cycle in cycles)


def _follow_audiences(svc: Services, session, lib: library.Library, cycles: list[Cycle],
                      now: dt.datetime) -> int:
    """Stop chasing whoever has left a policy's audience, and ask again whoever is back in it."""
    return sum(requests.follow_audiences(session, cycle, bool(lib.get(cycle.policy_id).audience),
                                         now)
               for cycle in cycles)


def _queue_due(svc: Services, lib: library.Library, cycle_ids: list[int], now: dt.datetime) -> int:
    """Queue the one stage each due request needs now (as the planner decides, on its policy's
    calendar), and store when to look at it next. Core rows, in batches: on an opening day every
    person is due at once. People in the same state are planned alike, so each distinct state is
    planned once."""
    plans: dict[tuple[int, planner.RequestState], tuple] = {}
    queued, after = 0, 0
    while True:
        with svc.db.write_core() as conn:
            batch = conn.execute(_DUE, {"cycle_ids": cycle_ids, "now": now, "after": after,
                                        "limit": BATCH}).all()
            if not batch:
                return queued
            after = batch[-1].id
            changes, messages = [], []
            for row in batch:
                state = planner.RequestState(
                    cycle_opens=row.opens_at, start_date=row.start_date, stage_sent=row.stage_sent,
                    reminded_at=row.reminded_at, last_message_at=row.last_message_at,
                    due_extended_to=row.due_extended_to)
                if (row.policy_id, state) not in plans:
                    plans[row.policy_id, state] = planner.queue(
                        state, lib.get(row.policy_id).calendar, now)
                stage, later, next_check = plans[row.policy_id, state]
                changes.append({"rid": row.id, "stage": later.stage_sent,
                                "last": later.last_message_at, "next": next_check})
                if stage is not None:
                    messages.append(dict(key=outbox.request_key(row.id, stage, row.round),
                                         kind=_kind(stage),
                                         stage=stage, request_id=row.id, staff_id=row.staff_id,
                                         to_email=row.email, to_name=row.name))
            requests.queued(conn, changes)
            outbox.enqueue_many(conn, svc.db.insert, now, messages)
            outbox.supersede(conn, [m["request_id"] for m in messages if m["stage"]], now)
            queued += len(messages)


def _kind(stage: int) -> str:
    return "reminder" if stage == planner.REMINDER else "followup"


_R = Request.__table__.c
_WHEN = UTCDateTime()
_DUE = (select(_R.id, _R.staff_id, _R.stage_sent, _R.reminded_at, _R.last_message_at, _R.due_extended_to,
               _R.round,
               Cycle.opens_at, Cycle.policy_id, Staff.start_date, Staff.email, Staff.name)
        .join(Staff, _R.staff_id == Staff.id).join(Cycle, _R.cycle_id == Cycle.id)
        .where(_R.cycle_id.in_(bindparam("cycle_ids", expanding=True)), _R.closed_at.is_(None),
               Staff.active, _R.next_check_at <= bindparam("now", type_=_WHEN),
               _R.id > bindparam("after"))
        .order_by(_R.id).limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=Request.__table__))
