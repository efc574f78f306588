"""The outbox: every email is a keyed row, claimed under a lease, sent, and its outcome recorded.

The claim commits before any SMTP I/O and each outcome commits on its own, so a crash can repeat at
most the one message that was on the wire. A claim is a lease: if the process dies, the rows come
back after `LEASE` and a later tick sends them. Transient refusals back off exponentially with
jitter; permanent ones are marked failed with the server's reason and reported.
"""

from __future__ import annotations

import datetime as dt
import random
import smtplib
import socket
import ssl
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from flask import current_app
from flask_mail import Message
from sqlalchemy import bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session, joinedload

from . import events, planner, policies, tokens
from .app import Services
from .mailer import connect, make_message
from .models import Cycle, Link, Outbox, Request, UTCDateTime

LEASE = dt.timedelta(minutes=15)
BATCH = 20  # with a 30 s timeout, a batch ends well inside its lease
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


@dataclass
class Prepared:
    """A claimed row rendered and ready to send, with what its outcome needs to know."""

    outbox_id: int
    kind: str
    stage: int | None
    to_name: str = ""
    to_email: str = ""
    ctx: dict = field(default_factory=dict)
    message: Message | None = None
    request_id: int | None = None
    staff_id: int | None = None
    state: planner.RequestState | None = None


def deliver(svc: Services, now: dt.datetime) -> Delivery:
    """Send everything that is due, in leased batches, over one SMTP connection.

    The next batch is claimed and rendered on a second thread while this one is on the wire: the
    sending thread spends most of its time waiting for the server, so rendering fits in those waits.
    """
    result = Delivery()
    worker = uuid.uuid4().hex
    app = current_app._get_current_object()

    def next_batch() -> list[Prepared]:
        with app.app_context():
            return _claim_batch(svc, now, worker, result)

    conn = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="signoff-render") as renderer:
        try:
            todo = next_batch()
            while todo:
                upcoming = renderer.submit(next_batch)
                conn, stopped = _send_batch(svc, conn, todo, now, result)
                if stopped is not None:
                    # Hand back what this run claimed but will not send: the rest of this batch
                    # and the batch rendered ahead of it. No attempts are spent.
                    _release(svc, [p.outbox_id for p in stopped + upcoming.result()], worker)
                    break
                # A failure in this batch may have queued an alert after the look-ahead claimed.
                todo = upcoming.result() or next_batch()
        finally:
            _drop(conn)
    return result


def _send_batch(svc: Services, conn, todo: list[Prepared], now: dt.datetime,
                result: Delivery) -> tuple[Any, list[Prepared] | None]:
    """Send one rendered batch; returns the connection and, if the run must stop, what is unsent."""
    for index, item in enumerate(todo):
        try:
            if conn is None:
                conn = _open()
            conn.send(item.message)
        except MailServerDown as exc:
            result.stopped = str(exc)
            return conn, todo[index:]
        except smtplib.SMTPSenderRefused as exc:
            # The server refuses us (login required, sender not allowed), not this recipient:
            # every message would meet the same, so stop and spend no attempts.
            result.stopped = f"the mail server refused the sender: {_reason(exc)}"
            return conn, todo[index:]
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            _failure(svc, item.outbox_id, _reason(exc), permanent, now, result)
            if exc.smtp_code == 421:
                conn = _drop(conn)
        except smtplib.SMTPRecipientsRefused as exc:
            (code, text), = exc.recipients.values()
            _failure(svc, item.outbox_id, f"{code} {_text(text)}", 500 <= code < 600, now, result)
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped connection or timeout mid-message: try this one again later.
            _failure(svc, item.outbox_id, _reason(exc), False, now, result)
            conn = _drop(conn)
        else:
            _sent(svc, item, now)
            result.sent += 1
    return conn, None


def _claim_batch(svc: Services, now: dt.datetime, worker: str,
                 result: Delivery) -> list[Prepared]:
    """Claim a batch in one short transaction, committed before any SMTP I/O, and render it.
    Batches whose every message is no longer wanted are skipped; [] means nothing is left."""
    while True:
        with svc.db.write() as session:
            ids = claim(session, now, worker)
            if not ids:
                return []
            rows = session.scalars(select(Outbox).where(Outbox.id.in_(ids))
                                   .order_by(Outbox.id)).all()
            requests = _load_requests(session, [row.request_id for row in rows if row.request_id])
            links: list[dict] = []
            todo = [p for p in (_prepare(svc, session, row, requests.get(row.request_id), now,
                                         result, links) for row in rows) if p is not None]
            if links:
                session.execute(insert(Link), links)
        # Rendered after the commit: the write lock is not held while templates run.
        for item in todo:
            item.message = make_message(item.kind, item.to_name, item.to_email, item.ctx)
        if todo:
            return todo


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


def _load_requests(session: Session, ids: list[int]) -> dict[int, Request]:
    """The batch's requests with their people and cycles in one query, not three per message."""
    if not ids:
        return {}
    return {r.id: r for r in session.scalars(
        select(Request).where(Request.id.in_(ids))
        .options(joinedload(Request.staff), joinedload(Request.cycle).joinedload(Cycle.policy)))}


def _prepare(svc: Services, session: Session, row: Outbox, request: Request | None,
             now: dt.datetime, result: Delivery, links: list[dict]) -> Prepared | None:
    """Gather what one claimed row's email says. Messages no longer wanted (confirmed, exempt,
    cycle over) are cancelled."""
    prepared = Prepared(outbox_id=row.id, kind=row.kind, stage=row.stage)
    if row.kind in ("reminder", "followup"):
        if request.closed_at is not None or not request.staff.active or not _current(svc, request, now):
            row.status, row.claimed_until = "cancelled", None
            result.cancelled += 1
            if request.closed_at is None and not request.staff.active and row.stage is not None:
                # Made inactive while this was queued: free the key and step back, so that if
                # they are made active again this cycle the stage is asked for afresh.
                row.key = f"{row.key}:cancelled:{row.id}"
                request.stage_sent = min(request.stage_sent, row.stage - 1)
                request.next_check_at = now
            return None
        token, token_hash = tokens.new_token()
        links.append({"request_id": request.id, "token_sha256": token_hash, "created_at": now})
        row.to_email, row.to_name = request.staff.email, request.staff.name
        ctx = reminder_context(svc, session, request, row.stage or 0, now)
        ctx["link"] = f"{svc.config.setting.base_url}/c/{token}"
        prepared.request_id, prepared.staff_id = request.id, request.staff_id
        prepared.state = state_of(request)
    elif row.kind == "digest":
        from .digest import digest_context

        ctx = digest_context(svc, session, now)
        if not ctx["overdue"]:
            row.status, row.claimed_until = "cancelled", None
            result.cancelled += 1
            return None
        row.payload = {"request_ids": [p.request_id for p in ctx["overdue"]]}
    else:
        ctx = dict(row.payload or {})
    prepared.to_name, prepared.to_email, prepared.ctx = row.to_name, row.to_email, ctx
    return prepared


def reminder_context(svc: Services, session: Session, request: Request, stage: int,
                     now: dt.datetime) -> dict[str, Any]:
    cal = svc.calendar
    policy = request.cycle.policy
    started = request.reminded_at or now
    due = request.due_extended_to or planner.overdue_at(started, cal)
    return {
        "person": request.staff,
        "policy": policy,
        "version": _version(session, policy.id),
        "stage": stage,
        "stage_label": planner.stage_label(stage),
        "due_date": due.astimezone(cal.tz),
        "first_sent": request.reminded_at.astimezone(cal.tz) if request.reminded_at else None,
        "policy_note": next((p.reminder_note for p in svc.config.policies if p.slug == policy.slug),
                            None),
    }


def _version(session: Session, policy_id: int):
    """The policy's current version, looked up once per session (a batch), not once per message."""
    versions = session.info.setdefault("policy_versions", {})
    if policy_id not in versions:
        versions[policy_id] = policies.current_version(session, policy_id)
    return versions[policy_id]


def _current(svc: Services, request: Request, now: dt.datetime) -> bool:
    """A message for last year's cycle is not sent once this year's has opened."""
    return request.cycle.year == svc.calendar.cycle_year(now)


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


def _sent(svc: Services, item: Prepared, now: dt.datetime) -> None:
    """Record one send in its own short commit."""
    if item.kind == "digest":
        from .digest import mark_escalated

        with svc.db.write() as session:
            session.execute(_MARK_SENT, _sent_params(item, now))
            mark_escalated(session, session.get(Outbox, item.outbox_id), now)
        return
    with svc.db.write_core() as conn:
        conn.execute(_MARK_SENT, _sent_params(item, now))
        if item.state is not None:
            _advance(svc, conn, item.request_id, item.state, now)
            events.record(conn, "invited" if item.stage == planner.REMINDER else "reminded", now,
                          staff_id=item.staff_id, request_id=item.request_id, stage=item.stage,
                          message_id=item.message.msgId)


def _sent_params(item: Prepared, now: dt.datetime) -> dict:
    return {"outbox_id": item.outbox_id, "now": now, "message_id": item.message.msgId}


def _advance(svc: Services, conn, request_id: int, state: planner.RequestState,
             now: dt.datetime) -> None:
    """The first reminder's outcome starts the person's clock: follow-ups and overdue count from it."""
    after = replace(state, reminded_at=state.reminded_at or now, last_message_at=now)
    conn.execute(_ADVANCE, {"request_id": request_id, "now": now,
                            "overdue": planner.overdue_at(after.reminded_at, svc.calendar),
                            "next_check": planner.next_check(after, svc.calendar, now)})


def state_of(request: Request) -> planner.RequestState:
    return planner.RequestState(cycle_opens=request.cycle.opens_at,
                                start_date=request.staff.start_date,
                                stage_sent=request.stage_sent, reminded_at=request.reminded_at,
                                last_message_at=request.last_message_at)


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
            _advance(svc, session, request.id, state_of(request), now)
        events.record(session, "delivery_failed", now, staff_id=request.staff_id if request else None,
                      request_id=row.request_id, message=row.kind, to=row.to_email, reason=reason)
        admin = svc.config.mail.admin_email
        if admin and row.kind != "alert":
            enqueue(session, svc.db.insert, key=f"alert:{row.id}", kind="alert", to_email=admin,
                    to_name="", now=now, payload={"to_email": row.to_email, "to_name": row.to_name,
                                                  "kind": row.kind, "reason": reason})
