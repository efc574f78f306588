"""The outbox: every email is a keyed row, claimed under a lease, sent, and its outcome recorded.

The claim commits before any SMTP I/O and each outcome commits on its own, so a crash can repeat at
most the one message that was on the wire. A claim is a lease: if the process dies, the rows come
back after `LEASE` and a later tick sends them. Transient refusals back off exponentially with
jitter; permanent ones are marked failed with the server's reason and reported.
"""

from __future__ import annotations

import collections
import datetime as dt
import random
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session, joinedload

from . import events, planner
from .app import Services
from .compose import INACTIVE, Composed, Composer, advance
from .mailer import connect, send
from .models import Link, Outbox, Request, UTCDateTime

# An outbox row's status: pending, retrying, handed (the server took it; what follows is not
# written yet), sent, failed or cancelled.
HANDED = "handed"
LEASE = dt.timedelta(minutes=15)
# A message is not started with less than this left on its claim: with a 30 s timeout on each
# step of the SMTP conversation, one slow message still ends inside the lease.
LEASE_MARGIN = dt.timedelta(minutes=5)
BATCH = 50
MAX_ATTEMPTS = 10
BACKOFF_BASE = dt.timedelta(minutes=5)
BACKOFF_CAP = dt.timedelta(hours=6)


class MailServerDown(Exception):
    """The server cannot be used at all this run (unreachable, refused our login)."""


@dataclass
class Delivery:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    failures: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the run stopped early, if it did


def backoff(attempts: int) -> dt.timedelta:
    delay = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return delay * random.uniform(0.75, 1.25)


def enqueue(session: Session, db_insert, *, key: str, kind: str, to_email: str, to_name: str,
            now: dt.datetime, stage: int | None = None, request_id: int | None = None,
            payload: dict | None = None) -> None:
    """Add a message unless one with this key exists already (the key is what makes sends once-only)."""
    enqueue_many(session, db_insert, now, [dict(key=key, kind=kind, stage=stage,
                                                request_id=request_id, to_email=to_email,
                                                to_name=to_name, payload=payload)])


def enqueue_many(session: Session, db_insert, now: dt.datetime, messages: list[dict]) -> None:
    """enqueue() for a batch, as one INSERT: the opening day queues thousands at once."""
    if messages:
        session.execute(db_insert(Outbox.__table__), [
            {"stage": None, "request_id": None, "payload": None, **m, "created_at": now,
             "status": "pending", "attempts": 0, "next_attempt_at": now} for m in messages])


def claim(session: Session, now: dt.datetime, worker: str, limit: int = BATCH) -> list[int]:
    ready = (select(Outbox.id)
             .where(Outbox.status.in_(("pending", "retrying")), Outbox.next_attempt_at <= now,
                    or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now))
             .order_by(Outbox.next_attempt_at, Outbox.id).limit(limit)
             .with_for_update(skip_locked=True))  # PostgreSQL; SQLite holds BEGIN IMMEDIATE instead
    rows = session.execute(update(Outbox).where(Outbox.id.in_(ready.scalar_subquery()))
                           .values(claimed_until=now + LEASE, claimed_by=worker)
                           .returning(Outbox.id)).scalars().all()
    return sorted(rows)


def deliver(svc: Services, now: dt.datetime) -> Delivery:
    """Send everything that is due, in leased batches, over one SMTP connection.

    Each batch is claimed (committed before any SMTP I/O), composed one batch ahead of the send
    loop (in a helper process once there is more than a batch to send), settled (its links stored,
    messages no longer wanted cancelled), then sent, each outcome in its own commit.
    """
    result = Delivery()
    worker = uuid.uuid4().hex
    started = time.monotonic()

    def clock() -> dt.datetime:
        # The tick's `now` moved on by the time it has run: a claim made an hour into a long run
        # holds its lease for LEASE from then, not from when the tick started.
        return now + dt.timedelta(seconds=time.monotonic() - started)

    composer = Composer(current_app._get_current_object(), svc, now)
    leases: collections.deque[dt.datetime] = collections.deque()
    outcomes = _Outcomes(svc)
    conn = None
    unsent: list[int] = []

    def claim_next() -> bool:
        at = clock()
        with svc.db.write() as session:
            ids = claim(session, at, worker)
        if ids:
            if not composer.pending and len(ids) == BATCH:
                composer.start_helper()  # more than one batch to come: compose alongside
            leases.append(at + LEASE)
            composer.submit(ids)
        return bool(ids)

    recover_handed(svc, now)
    try:
        while composer.pending or claim_next():
            claimed_until = leases.popleft()
            batch = composer.result()
            unsent = [c.outbox_id for c in batch]
            todo = _settle(svc, batch, now, result)
            claim_next()  # the next batch is composed while this one is on the wire
            conn, stopped = _send_batch(svc, conn, todo, now, clock, claimed_until, worker,
                                        outcomes, result, unsent)
            if stopped:
                break
    finally:
        # Whatever this run claimed and did not send goes back now, without spending attempts,
        # rather than waiting out its lease: a stop, a composing error, an interrupt.
        try:
            _release(svc, unsent + composer.outstanding(), worker)
        finally:
            composer.close()
            outcomes.close()
            _drop(conn)
    return result


def _settle(svc: Services, batch: list[Composed], now: dt.datetime,
            result: Delivery) -> list[Composed]:
    """Store what composing decided, in one short commit before anything is sent: the links the
    emails carry, the messages no longer wanted, addresses changed since they were queued."""
    links = [c.link for c in batch if c.link]
    cancelled = [c for c in batch if c.cancel]
    changed = [c for c in batch if c.address_changed or c.payload is not None]
    if links or cancelled or changed:
        with svc.db.write_core() as conn:
            if links:
                conn.execute(insert(Link.__table__), links)
            for c in cancelled:
                values: dict[str, Any] = {"status": "cancelled", "claimed_until": None}
                if c.cancel == INACTIVE:
                    # Free the key and step back, so that if they are made active again this
                    # cycle the stage is asked for afresh.
                    values["key"] = f"{c.key}:cancelled:{c.outbox_id}"
                    step_back = c.stage - 1
                    conn.execute(update(Request.__table__).where(_REQUEST.id == c.request_id)
                                 .values(stage_sent=case((_REQUEST.stage_sent > step_back, step_back),
                                                         else_=_REQUEST.stage_sent),
                                         next_check_at=now))
                conn.execute(update(Outbox.__table__).where(_OUTBOX.id == c.outbox_id)
                             .values(**values))
            for c in changed:
                values = ({"payload": c.payload} if c.payload is not None
                          else {"to_email": c.to_email, "to_name": c.to_name})
                conn.execute(update(Outbox.__table__).where(_OUTBOX.id == c.outbox_id)
                             .values(**values))
    result.cancelled += len(cancelled)
    return [c for c in batch if not c.cancel]


def _send_batch(svc: Services, conn, todo: list[Composed], now: dt.datetime, clock,
                claimed_until: dt.datetime, worker: str, outcomes: _Outcomes, result: Delivery,
                unsent: list[int]) -> tuple[Any, bool]:
    """Send one composed batch; returns the connection and whether the run must stop. `unsent`
    is kept to the ids that have neither been sent nor had an outcome recorded.

    Each send's outcome is committed while the server reads the next message's MAIL command, and
    always before that message's DATA: at most the one message on the wire can go twice.
    """
    sent: list[Composed] = []  # sent, its outcome not yet recorded: at most one

    def record() -> None:
        while sent:
            item = sent.pop()
            outcomes.sent(item, now)
            result.sent += 1
            unsent.remove(item.outbox_id)

    try:
        for index, item in enumerate(todo):
            if clock() > claimed_until - LEASE_MARGIN:
                # The claim is running out (a very slow server): hand the rest back to be claimed
                # afresh, rather than send a message another tick may be about to claim.
                record()
                _release(svc, [c.outbox_id for c in todo[index:]], worker)
                unsent.clear()
                return conn, False
            try:
                if conn is None:
                    conn = _open()
                send(conn, item, meanwhile=record)
            except MailServerDown as exc:
                result.stopped = str(exc)
                return conn, True
            except smtplib.SMTPSenderRefused as exc:
                # The server refuses us (login required, sender not allowed), not this recipient:
                # every message would meet the same, so stop and spend no attempts.
                result.stopped = f"the mail server refused the sender: {_reason(exc)}"
                return conn, True
            except smtplib.SMTPResponseException as exc:
                permanent = 500 <= exc.smtp_code < 600
                _failure(svc, item.outbox_id, _reason(exc), permanent, now, result)
                if exc.smtp_code == 421:
                    conn = _drop(conn)
            except smtplib.SMTPRecipientsRefused as exc:
                (code, text), = exc.recipients.values()
                _failure(svc, item.outbox_id, f"{code} {_text(text)}", 500 <= code < 600, now,
                         result)
            except (smtplib.SMTPException, OSError) as exc:
                # Dropped connection or timeout mid-message: try this one again later.
                _failure(svc, item.outbox_id, _reason(exc), False, now, result)
                conn = _drop(conn)
            else:
                sent.append(item)
                continue
            unsent.remove(item.outbox_id)
        record()
        unsent.clear()  # the rest were cancelled by _settle
        return conn, False
    finally:
        record()
        outcomes.follow_through(now)


def _open():
    conn = connect()
    try:
        return conn.__enter__()
    except smtplib.SMTPAuthenticationError as exc:
        raise MailServerDown(f"the mail server refused the login: {_reason(exc)}") from None
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        cfg = conn.mail
        raise MailServerDown(f"cannot reach the mail server {cfg.server}:{cfg.port}: "
                             f"{_reason(exc)}") from None


def _drop(conn) -> None:
    if conn is not None and conn.host is not None:
        try:
            conn.host.quit()
        except (smtplib.SMTPException, OSError):
            conn.host.close()
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__


def _text(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:500]


def _release(svc: Services, ids: list[int], worker: str) -> None:
    """Hand back claims without spending attempts: the server, not the message, was at fault."""
    if not ids:
        return
    with svc.db.write() as session:
        session.execute(update(Outbox).where(Outbox.id.in_(ids), Outbox.claimed_by == worker)
                        .values(claimed_until=None, claimed_by=None))


_OUTBOX = Outbox.__table__.c
_REQUEST = Request.__table__.c
_WHEN = UTCDateTime()
# Built once: these run once per email, so their construction would show up in the send rate.
_MARK_SENT = (update(Outbox.__table__).where(_OUTBOX.id == bindparam("outbox_id"))
              .values(status="sent", sent_at=bindparam("now", type_=_WHEN),
                      message_id=bindparam("message_id"), attempts=_OUTBOX.attempts + 1,
                      claimed_until=None, last_error=None))
_ADVANCE = (update(Request.__table__).where(_REQUEST.id == bindparam("request_id")).values(
    last_message_at=bindparam("now", type_=_WHEN),
    reminded_at=func.coalesce(_REQUEST.reminded_at, bindparam("now", type_=_WHEN)),
    # An extension an admin set before the first reminder went out is kept.
    overdue_at=case((_REQUEST.reminded_at.is_(None),
                     func.coalesce(_REQUEST.due_extended_to, bindparam("overdue", type_=_WHEN))),
                    else_=_REQUEST.overdue_at),
    next_check_at=bindparam("next_check", type_=_WHEN)))


_MARK_HANDED = (update(Outbox.__table__).where(_OUTBOX.id == bindparam("outbox_id"))
                .values(status=HANDED, sent_at=bindparam("now", type_=_WHEN),
                        message_id=bindparam("message_id"), attempts=_OUTBOX.attempts + 1,
                        last_error=None))


class _Outcomes:
    """Records each send in its own short commit, on one connection held for the run.

    A reminder or follow-up is marked `handed` (to the mail server) at once: that one-row commit
    is what keeps a crash from repeating more than the message on the wire. What follows from it
    (the person's clock, the event log) is written for the whole batch in one commit when the
    batch is done, or, if the run dies first, by a later run once the claim's lease has expired.
    """

    def __init__(self, svc: Services):
        self.svc = svc
        self.conn = None
        self.handed: list[Composed] = []

    def sent(self, item: Composed, now: dt.datetime) -> None:
        params = {"outbox_id": item.outbox_id, "now": now, "message_id": item.message_id}
        if item.kind == "digest":
            from .digest import mark_escalated

            with self.svc.db.write() as session:
                session.execute(_MARK_SENT, params)
                mark_escalated(session, session.get(Outbox, item.outbox_id), now)
            return
        if self.conn is None:
            self.conn = self.svc.db.raw_writer()
        with self.conn.transaction():
            self.conn.execute(_MARK_HANDED if item.advance else _MARK_SENT, params)
        if item.advance:
            self.handed.append(item)

    def follow_through(self, now: dt.datetime) -> None:
        """Write what follows from the batch's handed messages, in one commit."""
        if self.handed:
            with self.svc.db.write_core() as conn:
                _follow_through(conn, now, [(i.outbox_id, i.advance, i.staff_id, i.request_id,
                                             i.stage, i.message_id) for i in self.handed])
            self.handed.clear()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _follow_through(conn, now: dt.datetime, handed: list[tuple]) -> None:
    """For handed messages (outbox id, advance, staff id, request id, stage, message id): mark
    them sent, advance their requests, log them. Only rows still `handed` are touched, so the run
    that sent them and a later one recovering them cannot both do it."""
    mine = set(conn.execute(update(Outbox.__table__)
                            .where(_OUTBOX.id.in_([h[0] for h in handed]), _OUTBOX.status == HANDED)
                            .values(status="sent", claimed_until=None)
                            .returning(_OUTBOX.id)).scalars())
    handed = [h for h in handed if h[0] in mine]
    if not handed:
        return
    conn.execute(_ADVANCE, [h[1] for h in handed])
    conn.execute(events.INSERT, [
        events.row("invited" if stage == planner.REMINDER else "reminded", now, staff_id=staff_id,
                   request_id=request_id, stage=stage, message_id=message_id)
        for _, _, staff_id, request_id, stage, message_id in handed])


def recover_handed(svc: Services, now: dt.datetime) -> int:
    """Finish what a run that died between a send and its batch's end left: messages the server
    took (so not to be sent again) whose follow-through was never written. Waits for the lease, so
    a run still going is left to finish its own."""
    with svc.db.write() as session:
        rows = session.execute(select(Outbox.id, Outbox.request_id, Outbox.stage,
                                      Outbox.message_id, Outbox.sent_at)
                               .where(Outbox.status == HANDED, Outbox.claimed_until < now)).all()
        if not rows:
            return 0
        requests = {r.id: r for r in session.scalars(
            select(Request).where(Request.id.in_([row.request_id for row in rows]))
            .options(*_WITH_STATE))}
        for row in rows:
            request = requests[row.request_id]
            _follow_through(session, row.sent_at, [(row.id, advance(svc, request, row.sent_at),
                                                    request.staff_id, request.id, row.stage,
                                                    row.message_id)])
    return len(rows)


# What state_of() reads, loaded with the request in one query.
_WITH_STATE = [joinedload(Request.staff), joinedload(Request.cycle)]


def _failure(svc: Services, outbox_id: int, reason: str, permanent: bool, now: dt.datetime,
             result: Delivery) -> None:
    with svc.db.write() as session:
        row = session.get(Outbox, outbox_id)
        row.attempts += 1
        row.claimed_until = None
        row.last_error = reason
        if not permanent and row.attempts < MAX_ATTEMPTS:
            row.status = "retrying"
            row.next_attempt_at = now + backoff(row.attempts)
            result.retrying += 1
            return
        if not permanent:
            reason = f"gave up after {row.attempts} attempts: {reason}"
            row.last_error = reason
        row.status, row.failed_at = "failed", now
        result.failed += 1
        result.failures.append(f"{row.to_email}: {reason}")
        request = (session.get(Request, row.request_id, options=_WITH_STATE)
                   if row.request_id else None)
        if request is not None and row.kind in ("reminder", "followup"):
            session.execute(_ADVANCE, advance(svc, request, now))
        events.record(session, "delivery_failed", now, staff_id=request.staff_id if request else None,
                      request_id=row.request_id, message=row.kind, to=row.to_email, reason=reason)
        admin = svc.config.mail.admin_email
        if admin and row.kind != "alert":
            enqueue(session, svc.db.insert, key=f"alert:{row.id}", kind="alert", to_email=admin,
                    to_name="", now=now, payload={"to_email": row.to_email, "to_name": row.to_name,
                                                  "kind": row.kind, "reason": reason})
