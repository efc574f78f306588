"""What each claimed message says, composed into the bytes that go on the wire.

Composing a message (loading the person, rendering three templates, building the MIME parts) costs
more CPU than sending it. On the opening day a tick sends thousands, so `Composer` composes in a
helper process, one batch ahead of the sending loop: the sender spends its time on the wire, and
the two never queue for one interpreter lock. The composer only reads the database. What it decides
(the link to store, a message no longer wanted, a changed address) comes back as data, and the
sending process writes it, so every write stays in the one process that holds the claims.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from . import planner
from .app import Services
from .mailer import make_wire
from .models import Cycle, Outbox, Request

log = logging.getLogger("signoff.compose")

# Why a claimed message is not sent after all.
UNWANTED = "unwanted"  # confirmed, exempt, or last year's cycle
INACTIVE = "inactive"  # the person was made inactive while it was queued


PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process


class ComposeError(Exception):
    """Composing failed (a template error, the helper process died); the message says which."""


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

    With `helper=True` (and where the system can fork) a helper process composes while the caller
    sends; otherwise each batch is composed when its result is asked for. The helper is forked
    with no database connection open, reads through its own, and exits when the caller closes it
    or dies (its end of the pipe closes).
    """

    def __init__(self, app: Flask, svc: Services, now: dt.datetime):
        self.app, self.svc, self.now = app, svc, now
        self.pending: collections.deque[tuple[list[int], dict[int, str]]] = collections.deque()
        self.process = None

    def start_helper(self) -> None:
        if self.process is not None or "fork" not in multiprocessing.get_all_start_methods():
            return
        fork = multiprocessing.get_context("fork")
        self._results, child_results = fork.Pipe(duplex=False)
        _widen(child_results)
        child_orders, self._orders = fork.Pipe(duplex=False)
        self.svc.db.dispose()  # no pooled connection is shared with the helper
        self.process = fork.Process(
            target=_helper, name="signoff-composer", daemon=True,
            args=(self.app, self.svc, self.now, child_orders, child_results,
                  (self._results, self._orders)))
        self.process.start()
        child_orders.close()
        child_results.close()

    def submit(self, ids: list[int], links: dict[int, str]) -> None:
        self.pending.append((ids, links))
        if self.process is not None:
            try:
                self._orders.send((ids, links))
            except OSError:  # the helper has stopped (a batch ahead failed): result() says why
                pass

    def result(self) -> list[Composed]:
        """The oldest submitted batch, composed. Until this returns, its ids stay outstanding."""
        if self.process is None:
            try:
                ids, links = self.pending[0]
                composed = compose(self.svc, ids, self.now, links)
            except Exception as exc:  # noqa: BLE001 — reported as one line by the caller
                raise ComposeError(_describe(exc)) from exc
        else:
            try:
                status, composed = self._results.recv()
            except (EOFError, OSError):
                self.process.join(timeout=5)
                raise ComposeError(f"the composing process stopped unexpectedly "
                                   f"(exit code {self.process.exitcode})") from None
            if status != "ok":
                raise ComposeError(composed)
        self.pending.popleft()
        return composed

    def pipes(self) -> tuple:
        """This side's ends of the pipes to the helper (none without one), for a process forked
        later to close: the helper sees its orders end only when every copy is closed."""
        return (self._results, self._orders) if self.process is not None else ()

    def outstanding(self) -> list[int]:
        """The ids submitted but not yet taken: the caller hands their claims back."""
        return [i for ids, _ in self.pending for i in ids]

    def close(self) -> None:
        if self.process is None:
            return
        try:
            self._orders.send(None)
        except OSError:
            pass
        self._orders.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self._results.close()
        self.process = None


def _helper(app: Flask, svc: Services, now: dt.datetime, orders, results, parent_ends) -> None:
    """The helper process: compose each batch it is sent until told to stop or the caller is gone."""
    for end in parent_ends:  # else the helper would keep its own pipe open and never see EOF
        end.close()
    # A Ctrl-C at the terminal reaches the whole process group: the caller decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    svc.db.engine.dispose(close=False)
    # Composing runs a batch ahead, so it can yield the CPU to the sending loop and the mail
    # server whenever they want it: they are the ones the run waits for.
    os.nice(10)
    with app.app_context():
        while True:
            try:
                order = orders.recv()
            except (EOFError, OSError):
                return
            if order is None:
                return
            try:
                reply = ("ok", compose(svc, order[0], now, order[1]))
            except Exception as exc:  # noqa: BLE001 — sent to the caller as one line
                log.debug("composing failed", exc_info=True)
                reply = ("error", _describe(exc))
            try:
                results.send(reply)
            except OSError:
                return
            if reply[0] != "ok":
                return


def _widen(pipe) -> None:
    """Room in the pipe for a whole composed batch (Linux), so the helper hands it over and goes
    on to the next instead of waiting for the sender to read it 64 KiB at a time."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _describe(exc: BaseException) -> str:
    return f"cannot compose an email: {type(exc).__name__}: {exc}"
