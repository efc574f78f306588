"""What each claimed message says, composed into the bytes that go on the wire.

Composing a message (loading the person, rendering three templates, building the MIME parts) costs
more CPU than sending it. On the opening day a tick sends thousands, so `Composer` composes in a
helper process, one batch ahead of the sending loop: the sender spends its time on the wire, and
the two never queue for one interpreter lock. The composer only reads the database. What it decides
(the link to store, a message no longer wanted, a changed address) comes back as data, and the
tick writes it (outbox.py), so what is stored always follows from what it holds claims for.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from . import helpers, planner
from .app import Services
from .mailer import make_wire
from .models import Cycle, Outbox, Request

# Why a claimed message is not sent after all.
UNWANTED = "unwanted"  # confirmed, exempt, or last year's cycle
INACTIVE = "inactive"  # the person was made inactive while it was queued


class ComposeError(Exception):
    """Composing failed (a template error, say); the message says why."""


@dataclass
class Composed:
    """One claimed outbox row: either the bytes to send and what to record, or why not to send."""

    outbox_id: int
    kind: str
    key: str
    stage: int | None = None
    request_id: int | None = None
    staff_id: int | None = None
    to_email: str = ""
    to_name: str = ""
    address_changed: bool = False
    envelope_from: str = ""
    envelope_to: str = ""
    data: bytes = b""
    message_id: str = ""
    advance: dict | None = None  # the request's clock once the message has gone
    payload: dict | None = None  # for a digest: whom it names
    cancel: str | None = None  # UNWANTED or INACTIVE: not sent


def compose(svc: Services, ids: list[int], now: dt.datetime,
            links: dict[int, str]) -> list[Composed]:
    """Compose the claimed rows `ids`, reading the database but not writing to it. `links` has
    the token of each reminder's and follow-up's link, stored when the row was claimed."""
    with svc.db.read() as session:
        rows = session.scalars(select(Outbox).where(Outbox.id.in_(ids)).order_by(Outbox.id)).all()
        requests = _load_requests(session, [row.request_id for row in rows if row.request_id])
        return [_compose(svc, session, row, requests.get(row.request_id), now, links.get(row.id))
                for row in rows]


def _load_requests(session: Session, ids: list[int]) -> dict[int, Request]:
    """The batch's requests with their cycles in one query and their people in a second, not
    three per message. The people by their ids (selectinload): joined to the requests instead,
    PostgreSQL reads the whole staff table into a hash for every batch of fifty."""
    if not ids:
        return {}
    return {r.id: r for r in session.scalars(
        select(Request).where(Request.id.in_(ids))
        .options(selectinload(Request.staff), joinedload(Request.cycle).joinedload(Cycle.policy)))}


def _compose(svc: Services, session: Session, row: Outbox, request: Request | None,
             now: dt.datetime, token: str | None) -> Composed:
    item = Composed(outbox_id=row.id, kind=row.kind, key=row.key, stage=row.stage,
                    to_email=row.to_email, to_name=row.to_name)
    if row.kind in ("reminder", "followup"):
        staff = request.staff
        if request.closed_at is not None or not staff.active or not _current(svc, request, now):
            # Made inactive while this was queued: the stage is asked for afresh if they come back.
            inactive = request.closed_at is None and not staff.active and row.stage is not None
            item.cancel = INACTIVE if inactive else UNWANTED
            item.request_id = request.id
            return item
        if token is None:
            raise ValueError(f"outbox row {row.id} was claimed without its link")
        item.address_changed = (staff.email, staff.name) != (row.to_email, row.to_name)
        item.to_email, item.to_name = staff.email, staff.name
        item.request_id, item.staff_id = request.id, request.staff_id
        item.advance = advance(svc, request, now)
        ctx = reminder_context(svc, request, row.stage or 0, now)
        ctx["link"] = f"{svc.config.setting.base_url}/c/{token}"
    elif row.kind == "digest":
        from .digest import digest_context

        ctx = digest_context(svc, session, now)
        if not ctx["overdue"]:
            item.cancel = UNWANTED
            return item
        item.payload = {"request_ids": [p.request_id for p in ctx["overdue"]]}
    else:
        ctx = dict(row.payload or {})
    wire = make_wire(item.kind, item.to_name, item.to_email, ctx)
    item.envelope_from, item.envelope_to = wire.envelope_from, wire.envelope_to
    item.data, item.message_id = wire.data, wire.message_id
    return item


def advance(svc: Services, request: Request, now: dt.datetime) -> dict[str, Any]:
    """The first reminder's outcome starts the person's clock: follow-ups and overdue count from
    it. Worked out here, from the tick's `now`, so the sending loop only has to store it."""
    overdue, next_check = _clock_after(svc.calendar, now, state_of(request))
    return {"request_id": request.id, "now": now, "overdue": overdue, "next_check": next_check}


@functools.lru_cache(maxsize=1024)
def _clock_after(cal, now: dt.datetime, state: planner.RequestState):
    """(overdue, next check) of a request in `state` once a message goes at `now`: on the opening
    day the same for everyone, so worked out once rather than for each of thousands."""
    after = replace(state, reminded_at=state.reminded_at or now, last_message_at=now)
    return planner.overdue_at(after.reminded_at, cal), planner.next_check(after, cal, now)


def reminder_context(svc: Services, request: Request, stage: int,
                     now: dt.datetime) -> dict[str, Any]:
    cal = svc.calendar
    policy = request.cycle.policy
    started = request.reminded_at or now
    due = request.due_extended_to or planner.overdue_at(started, cal)
    return {
        "person": request.staff,
        "policy": policy,
        "stage": stage,
        "stage_label": planner.stage_label(stage),
        "due_date": due.astimezone(cal.tz),
        "first_sent": request.reminded_at.astimezone(cal.tz) if request.reminded_at else None,
        "policy_note": next((p.reminder_note for p in svc.config.policies if p.slug == policy.slug),
                            None),
    }


def _current(svc: Services, request: Request, now: dt.datetime) -> bool:
    """A message for last year's cycle is not sent once this year's has opened."""
    return request.cycle.year == svc.calendar.cycle_year(now)


def state_of(request: Request) -> planner.RequestState:
    return planner.RequestState(cycle_opens=request.cycle.opens_at,
                                start_date=request.staff.start_date,
                                stage_sent=request.stage_sent, reminded_at=request.reminded_at,
                                last_message_at=request.last_message_at)


class Composer:
    """compose() for batches submitted in order, results taken in the same order.

    After start_helper() (where the system can fork) a helper process composes while the caller
    sends; otherwise each batch is composed when its result is asked for. The helper reads through
    its own database connection (see helpers.py).
    """

    def __init__(self, app: Flask, svc: Services, now: dt.datetime):
        self.app, self.svc, self.now = app, svc, now
        self.pending: collections.deque[tuple[list[int], dict[int, str]]] = collections.deque()
        self.helper: helpers.Helper | None = None

    def start_helper(self) -> None:
        if self.helper is not None or not helpers.can_fork():
            return
        self.svc.db.dispose()  # no pooled connection is shared with the helper
        self.helper = helpers.Helper(
            "signoff-composer", "composing", self.svc.db,
            functools.partial(_composing, self.app, self.svc, self.now), wide=True)

    def submit(self, ids: list[int], links: dict[int, str]) -> None:
        self.pending.append((ids, links))
        if self.helper is not None:
            self.helper.send((ids, links))

    def result(self) -> list[Composed]:
        """The oldest submitted batch, composed. Until this returns, its ids stay outstanding."""
        if self.helper is None:
            composed = _compose_batch(self.svc, self.now, self.pending[0])
        else:
            composed = self.helper.receive()
        self.pending.popleft()
        return composed

    def pipes(self) -> tuple:
        """This side's ends of the helper's pipes, if there is one (see helpers.Helper.pipes())."""
        return self.helper.pipes() if self.helper is not None else ()

    def outstanding(self) -> list[int]:
        """The ids submitted but not yet taken: the caller hands their claims back."""
        return [i for ids, _ in self.pending for i in ids]

    def close(self) -> None:
        if self.helper is not None:
            self.helper.close()
            self.helper = None


@contextmanager
def _composing(app: Flask, svc: Services, now: dt.datetime):
    """In the helper process: what composes each batch it is sent."""
    with app.app_context():
        yield functools.partial(_compose_batch, svc, now)


def _compose_batch(svc: Services, now: dt.datetime, order: tuple) -> list[Composed]:
    ids, links = order
    try:
        return compose(svc, ids, now, links)
    except Exception as exc:  # noqa: BLE001 — reported as one line by the caller
        raise ComposeError(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    return f"cannot compose an email: {type(exc).__name__}: {exc}"
