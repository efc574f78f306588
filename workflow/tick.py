"""One tick: from the database and `now`, do everything that is due, then send it.

Open this year's cycles, ask every active person without a request for one (new starters included),
queue the reminders and follow-ups that have come due, queue the head teacher's digest, deliver.
Every step is idempotent and keyed, so cron, a scheduler and a person at the terminal can all run it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import exists, literal, select, update
from sqlalchemy.orm import contains_eager, selectinload

from . import digest, events, planner, policies
from .app import Services
from .models import Cycle, Request, Staff, TickRun
from .outbox import Delivery, deliver, enqueue_many, state_of

log = logging.getLogger("signoff.tick")
BATCH = 500


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
        result.new_requests = _ask_everyone(svc, session, setting_id, cycles, now)
    result.queued = _queue_due(svc, [c.id for c in cycles], now)
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
                  now: dt.datetime) -> int:
    """A request for every active person who has none in the cycle: one INSERT … SELECT each."""
    added = 0
    for cycle in cycles:
        missing = (select(literal(cycle.id), Staff.id, literal(now, Request.created_at.type),
                          literal(-1), literal(now, Request.next_check_at.type))
                   .where(Staff.setting_id == setting_id, Staff.active,
                          ~exists().where(Request.cycle_id == cycle.id,
                                          Request.staff_id == Staff.id)))
        stmt = svc.db.insert(Request.__table__).from_select(
            ["cycle_id", "staff_id", "created_at", "stage_sent", "next_check_at"], missing)
        added += session.execute(stmt).rowcount or 0
    return added


def _queue_due(svc: Services, cycle_ids: list[int], now: dt.datetime) -> int:
    """Queue the one stage each due request needs now; store when to look at it next."""
    queued, after = 0, 0
    while True:
        with svc.db.write() as session:
            batch = session.scalars(
                select(Request).join(Staff, Request.staff_id == Staff.id)
                .options(contains_eager(Request.staff), selectinload(Request.cycle))
                .where(Request.cycle_id.in_(cycle_ids), Request.closed_at.is_(None), Staff.active,
                       Request.next_check_at <= now, Request.id > after)
                .order_by(Request.id).limit(BATCH)
                .with_for_update(skip_locked=True, of=Request)).all()
            if not batch:
                return queued
            after = batch[-1].id
            messages = []
            for request in batch:
                stage = planner.due_stage(state_of(request), svc.calendar, now)
                if stage is not None:
                    messages.append(dict(
                        key=f"req:{request.id}:{planner.stage_name(stage)}", stage=stage,
                        kind="reminder" if stage == planner.REMINDER else "followup",
                        request_id=request.id, to_email=request.staff.email,
                        to_name=request.staff.name))
                    request.stage_sent = stage
                    if stage != planner.REMINDER:
                        request.last_message_at = now
                request.next_check_at = planner.next_check(state_of(request), svc.calendar, now)
            enqueue_many(session, svc.db.insert, now, messages)
            queued += len(messages)
