"""One tick: from the database and `now`, do everything that is due, then send it.

Open this year's cycles, ask every active person without a request for one (new starters included),
queue the reminders and follow-ups that have come due, queue the head teacher's digest, deliver.
Every step is idempotent and keyed, so cron, a scheduler and a person at the terminal can all run it.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
from dataclasses import dataclass, field, replace

from sqlalchemy import String, and_, bindparam, case, cast, literal, or_, select, update

from . import digest, events, planner, policies
from .app import Services
from .models import Cycle, Outbox, Request, Staff, TickRun, UTCDateTime
from .outbox import Delivery, deliver, enqueue_many

log = logging.getLogger("signoff.tick")
BATCH = 500
# How many requests of a batch must come to the same decision to be queued by one statement.
GROUPED = 20
# Rows added in one step after which PostgreSQL's statistics on them are refreshed before the
# next step reads them (an opening day, a large roster's first tick); see refresh_statistics().
ANALYZE_AFTER = 1000


@dataclass
class TickResult:
    at: dt.datetime
    opened: list[str] = field(default_factory=list)
    new_requests: int = 0
    queued: int = 0
    digest_queued: bool = False
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def ok(self) -> bool:
        d = self.delivery
        return d.stopped is None and d.retrying == 0 and d.failed == 0

    def summary(self) -> str:
        d = self.delivery
        parts = [f"tick at {self.at.isoformat(timespec='seconds')}:"]
        if self.opened:
            parts.append(f"opened {', '.join(self.opened)};")
        parts.append(f"{self.new_requests} new requests, {self.queued} queued"
                     f"{' (with digest)' if self.digest_queued else ''}, {d.sent} sent,"
                     f" {d.retrying} retrying, {d.failed} failed")
        if d.cancelled:
            parts.append(f"({d.cancelled} no longer needed)")
        if d.stopped:
            parts.append(f"— stopped: {d.stopped}")
        return " ".join(parts)


def run(svc: Services, now: dt.datetime) -> TickResult:
    result = TickResult(at=now)
    with svc.db.write() as session:
        run_row = TickRun(started_at=dt.datetime.now(dt.timezone.utc), at=now)
        session.add(run_row)
        setting_id = policies.sync(session, svc.config, now)
        cycles = _open_cycles(svc, session, now, result)
        result.new_requests, result.queued = _ask_everyone(svc, session, setting_id, cycles, now)
    if result.new_requests >= ANALYZE_AFTER:
        svc.db.refresh_statistics("request", "staff")
    result.queued += _queue_due(svc, [c.id for c in cycles], now)
    if result.queued >= ANALYZE_AFTER:
        svc.db.refresh_statistics("request", "outbox")
    with svc.db.write() as session:
        result.digest_queued = digest.enqueue_if_due(svc, session, now)
    result.delivery = deliver(svc, now)
    with svc.db.write() as session:
        session.execute(update(TickRun).where(TickRun.id == run_row.id).values(
            finished_at=dt.datetime.now(dt.timezone.utc), ok=result.ok, summary=result.summary()))
    return result


def _open_cycles(svc: Services, session, now: dt.datetime, result: TickResult) -> list[Cycle]:
    year = svc.calendar.cycle_year(now)
    cycles = []
    for policy in policies.configured(session, svc.config):
        find = select(Cycle).filter_by(policy_id=policy.id, year=year)
        cycle = session.scalars(find).first()
        if cycle is None:
            # ON CONFLICT DO NOTHING: on PostgreSQL another tick may open it at the same moment.
            opened = session.execute(svc.db.insert(Cycle.__table__).values(
                policy_id=policy.id, year=year, opens_at=svc.calendar.cycle_opens(year),
                created_at=now)).rowcount
            cycle = session.scalars(find).one()
            if opened:
                events.record(session, "cycle_opened", now, policy=policy.slug, year=year)
                result.opened.append(f"{policy.slug} {year}")
        cycles.append(cycle)
    return cycles


def _ask_everyone(svc: Services, session, setting_id: int, cycles: list[Cycle],
                  now: dt.datetime) -> tuple[int, int]:
    """A request for every active person who has none in the cycle; returns how many, and how many
    first reminders were queued with them.

    Everyone who had started by the opening is in the same state, so they are created already
    planned, and their first reminders (if due) queued by one more INSERT … SELECT, in this same
    transaction: on an opening day that is everyone, and _queue_due() would read them all back
    and update them before the first email could go. New starters still to start are left for
    _queue_due(), which plans each start date as it comes.

    NOT IN rather than NOT EXISTS: PostgreSQL then reads the cycle's requests once, into a hash.
    Planned as an anti-join instead, on a cycle with no requests yet (its opening day), it may
    choose a nested loop that rescans the rows this very statement is inserting: quadratic in the
    number of staff.
    """
    added = queued = 0
    for cycle in cycles:
        # A start date on or before the opening's day moves the first reminder no later.
        started = or_(Staff.start_date.is_(None),
                      Staff.start_date <= svc.calendar.local_date(cycle.opens_at))
        stage, later = _decide(svc.calendar, now, planner.RequestState(
            cycle_opens=cycle.opens_at, start_date=None))
        asked = select(Request.staff_id).where(Request.cycle_id == cycle.id)
        missing = (select(literal(cycle.id), Staff.id, literal(now, _WHEN),
                          _either(started, later.stage_sent, -1),
                          _either(started, later.last_message_at, None, _WHEN),
                          _either(started, later.next_check, now, _WHEN))
                   .where(Staff.setting_id == setting_id, Staff.active, Staff.id.not_in(asked)))
        made = session.execute(svc.db.insert(Request.__table__).from_select(
            ["cycle_id", "staff_id", "created_at", "stage_sent", "last_message_at",
             "next_check_at"], missing)).rowcount or 0
        added += made
        if made and stage is not None:
            # The requests just made (none made before has this `now`), or by a tick at the
            # same moment: the outbox's keys keep each message once.
            requests = and_(_R.cycle_id == cycle.id,
                            _R.created_at == bindparam("now", type_=_WHEN),
                            _R.stage_sent == stage, _R.reminded_at.is_(None))
            queued += session.execute(_queue_all(svc.db, stage, requests),
                                      {"now": now}).rowcount or 0
    return added, queued


def _either(condition, value, otherwise, type_=None):
    """`value` where `condition` holds, else `otherwise`: CASE WHEN … THEN … ELSE … END."""
    return case((condition, literal(value, type_)), else_=literal(otherwise, type_))


def _queue_due(svc: Services, cycle_ids: list[int], now: dt.datetime) -> int:
    """Queue the one stage each due request needs now; store when to look at it next.

    Core rows, not ORM objects, and each distinct state planned once: on a follow-up day (or a
    first tick after downtime) thousands of requests are in the same state, and this runs for each
    of them before a message can go. (The opening day's are planned as they are made: see
    _ask_everyone().) Requests that come to the same decision, GROUPED or more of them in a batch,
    are queued and updated by two statements for them all; the few scattered ones of an ordinary
    day go a row at a time.
    """
    decide = functools.lru_cache(maxsize=4096)(functools.partial(_decide, svc.calendar, now))
    queued, after = 0, 0
    while True:
        with svc.db.write_core() as conn:
            batch = conn.execute(_DUE, {"cycle_ids": cycle_ids, "now": now, "after": after,
                                        "limit": BATCH}).all()
            if not batch:
                return queued
            after = batch[-1].id
            decided: dict[tuple, list] = collections.defaultdict(list)
            for row in batch:
                decided[decide(planner.RequestState(
                    cycle_opens=row.opens_at, start_date=row.start_date, stage_sent=row.stage_sent,
                    reminded_at=row.reminded_at, last_message_at=row.last_message_at))].append(row)
            messages, changes = [], []
            for (stage, later), rows in decided.items():
                planned = {"stage": later.stage_sent, "last": later.last_message_at,
                           "next": later.next_check}
                if len(rows) >= GROUPED:
                    ids = [row.id for row in rows]
                    conn.execute(_planned_all(svc.db), {**planned, "ids": ids})
                    if stage is not None:
                        conn.execute(_queue_all(svc.db, stage, svc.db.among(_R.id, "ids")),
                                     {"ids": ids, "now": now})
                        queued += len(ids)
                    continue
                changes += [{**planned, "rid": row.id} for row in rows]
                if stage is not None:
                    messages += [dict(key=_key(row.id, stage), stage=stage, kind=_kind(stage),
                                      request_id=row.id, to_email=row.email, to_name=row.name)
                                 for row in rows]
            if changes:
                conn.execute(_PLANNED, changes)
            enqueue_many(conn, svc.db.insert, now, messages)
            queued += len(messages)


def _key(request_id: int, stage: int) -> str:
    return f"req:{request_id}:{planner.stage_name(stage)}"


def _kind(stage: int) -> str:
    return "reminder" if stage == planner.REMINDER else "followup"


@dataclass(frozen=True)
class _Later:
    stage_sent: int
    last_message_at: dt.datetime | None
    next_check: dt.datetime | None


def _decide(cal, now: dt.datetime, state: planner.RequestState) -> tuple[int | None, _Later]:
    """The stage to queue now (if any), and the request as it will be stored."""
    stage = planner.due_stage(state, cal, now)
    if stage is not None:
        state = replace(state, stage_sent=stage,
                        last_message_at=state.last_message_at if stage == planner.REMINDER else now)
    return stage, _Later(state.stage_sent, state.last_message_at,
                         planner.next_check(state, cal, now))


_R = Request.__table__.c
_WHEN = UTCDateTime()
_DUE = (select(_R.id, _R.stage_sent, _R.reminded_at, _R.last_message_at, Cycle.opens_at,
               Staff.start_date, Staff.email, Staff.name)
        .join(Staff, _R.staff_id == Staff.id).join(Cycle, _R.cycle_id == Cycle.id)
        .where(_R.cycle_id.in_(bindparam("cycle_ids", expanding=True)), _R.closed_at.is_(None),
               Staff.active, _R.next_check_at <= bindparam("now", type_=UTCDateTime()),
               _R.id > bindparam("after"))
        .order_by(_R.id).limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=Request.__table__))
_PLANNED_VALUES = dict(stage_sent=bindparam("stage"),
                       last_message_at=bindparam("last", type_=UTCDateTime()),
                       next_check_at=bindparam("next", type_=UTCDateTime()))
_PLANNED = update(Request.__table__).where(_R.id == bindparam("rid")).values(**_PLANNED_VALUES)


def _planned_all(db):
    """_PLANNED for the requests `ids`, all planned alike."""
    return update(Request.__table__).where(db.among(_R.id, "ids")).values(**_PLANNED_VALUES)


def _queue_all(db, stage: int, requests):
    """enqueue_many() of stage `stage` for the `requests` (a condition on them), as one INSERT …
    SELECT: the key made as _key() makes it, the address read from the person."""
    now = bindparam("now", type_=_WHEN)
    key = literal("req:") + cast(_R.id, String) + literal(f":{planner.stage_name(stage)}")
    rows = (select(key, literal(_kind(stage)), literal(stage), _R.id, Staff.email, Staff.name, now,
                   literal("pending"), literal(0), now)
            .join(Staff, _R.staff_id == Staff.id)
            .where(requests).order_by(_R.id))
    return db.insert(Outbox.__table__).from_select(
        ["key", "kind", "stage", "request_id", "to_email", "to_name", "created_at", "status",
         "attempts", "next_attempt_at"], rows)
