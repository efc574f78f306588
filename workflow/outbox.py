"""The outbox: every email is a keyed row, claimed under a lease, sent, and its outcome recorded.

How a run (deliver()) goes:
- Rows are claimed in batches, under a lease, together with the links their emails will carry, in
  one commit before any SMTP I/O. AHEAD batches are kept claimed and composing (compose.py) while
  one is sent.
- Once the server has taken a message its row is marked `handed`, in a one-row commit made while
  the server reads the next message's MAIL command and always before that message's DATA: a crash
  repeats at most the one message that was on the wire.
- What follows from a batch (rows `sent`, each person's clock, the event log) is written in the
  same commit as the next claim. A run that dies first leaves rows `handed`; a later run finishes
  them once their lease has expired (recover_handed()), and never sends them again.
- If the process dies, its claims come back after LEASE and a later tick sends them. Transient
  refusals back off exponentially with jitter; permanent ones are marked failed with the server's
  reason and reported.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
import random
import smtplib
import socket
import ssl
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, joinedload

from . import events, helpers, planner, tokens
from .app import Services
from .compose import INACTIVE, Composed, Composer, advance
from .db import RawWriter
from .mailer import connect, send
from .models import Link, Outbox, Request, UTCDateTime

log = logging.getLogger("signoff.outbox")

# An outbox row's status: pending, retrying, handed (the server took it; what follows is not
# written yet), sent, failed or cancelled.
HANDED = "handed"
LEASE = dt.timedelta(minutes=15)
# A message is not started with less than this left on its claim: with a 30 s timeout on each
# step of the SMTP conversation, one slow message still ends inside the lease.
LEASE_MARGIN = dt.timedelta(minutes=5)
BATCH = 50
AHEAD = 2  # batches claimed and composing while one is sent: a hiccup in composing is absorbed
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
    """Lease up to `limit` due rows to `worker` (retries first); returns their ids."""
    rows = _claim_rows(lambda statement, params: session.execute(statement, params).all(),
                       session.get_bind().dialect.name, now, worker, limit)
    return sorted(row[0] for row in rows)


def _claim_rows(run, dialect: str, now: dt.datetime, worker: str, limit: int) -> list:
    """(id, request id, kind) of the rows claimed, `run(statement, params)` running each claim."""
    rows: list = []
    for status in ("retrying", "pending"):
        rows += run(_CLAIM[dialect, status], {"now": now, "until": now + LEASE, "worker": worker,
                                              "limit": limit - len(rows)})
        if len(rows) == limit:
            break
    return rows


def deliver(svc: Services, now: dt.datetime) -> Delivery:
    """Send everything that is due, over one SMTP connection (see the module's docstring)."""
    recover_handed(svc, now)
    run = _Run(svc, now)
    try:
        run.go()
    finally:
        run.close()
    return run.result


class _Run:
    """One deliver(): its claims, the composer, its SMTP connection, its outcomes."""

    def __init__(self, svc: Services, now: dt.datetime):
        self.svc, self.now = svc, now
        self.result = Delivery()
        self.worker = uuid.uuid4().hex
        self.started = time.monotonic()
        self.composer = Composer(current_app._get_current_object(), svc, now)
        self.ledger = _Ledger(svc)
        self.leases: collections.deque[dt.datetime] = collections.deque()  # per claimed batch
        self.links: dict[int, str] = {}  # the unsent claimed rows' links, by outbox id
        self.conn = None
        self.unsent: list[int] = []  # the batch in hand: ids with no outcome recorded yet
        self.handed: list[_Handed] = []  # handed this batch; followed through with the next claim
        self.turns: helpers.Helper | None = None  # see turn()
        self.turning = False  # a turn made there, its claims not yet taken up

    def clock(self) -> dt.datetime:
        # The tick's `now` moved on by the time it has run: a claim made an hour into a long run
        # holds its lease for LEASE from then, not from when the tick started.
        return self.now + dt.timedelta(seconds=time.monotonic() - self.started)

    def go(self) -> None:
        self.turn()
        while True:
            if not self.composer.pending:
                self.collect()  # the last turn may have found more
                if not self.composer.pending:
                    return
            claimed_until = self.leases.popleft()
            batch = self.composer.result()
            self.unsent = [c.outbox_id for c in batch]
            todo = self.settle(batch)
            if self.send(todo, claimed_until):
                return
            self.collect()
            self.turn(soon=True)

    def turn(self, soon: bool = False) -> None:
        """One commit between batches: what follows from the batch just sent, and claims (with
        the links their emails will carry) to keep AHEAD batches composing.

        With `soon`, on PostgreSQL, the commit is made by a helper process of its own (see
        _take()) while the next batch (composed already) is sent, and its claims are taken up by
        the next collect(): the mail server is kept busy instead of waiting on a dozen round
        trips. On a thread of the tick instead, the turn's Python work (some 30 µs an email) held
        the interpreter lock the sending loop waits for between each reply of the mail server and
        its next command. (On SQLite the database is in-process and the turn is quick; the tick
        makes it at once.)
        """
        handed, self.handed = self.handed, []
        wanted = AHEAD + 1 - len(self.composer.pending)
        if not soon or self.turns is None:
            with self.ledger.transaction() as writer:
                claims = self._turn(writer, handed, wanted)
            self._take(claims)
            return
        self.turns.send((handed, wanted))
        self.turning = True

    def collect(self, take: bool = True) -> list[int]:
        """Take up the claims of a turn made by the turns process (see turn()). With `take`
        false (the run is ending) they are not sent to composing: their ids are returned, to hand
        back."""
        if not self.turning:
            return []
        self.turning = False
        claims = self.turns.receive()
        if take:
            self._take(claims)
            return []
        for _, _, links in claims:
            self.links.update({i: link[2] for i, link in links.items()})
        return [i for _, ids, _ in claims for i in ids]

    def _turn(self, writer: RawWriter, handed: list[_Handed], wanted: int) -> list[tuple]:
        """The turn's statements, on `writer` in its transaction: (lease start, ids, links) of each
        batch claimed. Touches nothing of the run's but its clock: it may run in another process."""
        if handed:
            _follow_through(writer, handed)
        claims = []
        for _ in range(wanted):
            at = self.clock()
            rows = _claim_rows(writer.rows, writer.dialect, at, self.worker, BATCH)
            if not rows:
                break
            linked = [row for row in rows if row[2] in ("reminder", "followup")]
            links = {row[0]: (row[1], *token)
                     for row, token in zip(linked, tokens.new_tokens(len(linked)))}
            writer.executemany(_ADD_LINK, [
                {"request_id": request_id, "token_sha256": digest, "created_at": self.now}
                for request_id, _, digest in links.values()])
            claims.append((at, sorted(row[0] for row in rows), links))
            if len(rows) < BATCH:
                break
        return claims

    def _take(self, claims: list[tuple]) -> None:
        for at, ids, links in claims:
            if self.composer.helper is None and not self.composer.pending and len(ids) == BATCH:
                # More than a batch to send: compose alongside, in a helper forked with no
                # database connection open; and on PostgreSQL make the turns in another.
                self.ledger.close()
                self.composer.start_helper()
                if self.composer.helper is not None and not self.svc.db.is_sqlite:
                    self.turns = helpers.Helper(
                        "signoff-turns", "turns", self.svc.db,
                        functools.partial(_making_turns, self), others=self.composer.pipes())
            self.leases.append(at + LEASE)
            self.links.update({i: link[2] for i, link in links.items()})
            self.composer.submit(ids, {i: link[1] for i, link in links.items()})

    def _close_turns(self) -> None:
        if self.turns is not None:
            self.turns.close()
            self.turns = None

    def settle(self, batch: list[Composed]) -> list[Composed]:
        """Store what composing decided, before anything is sent: messages no longer wanted (and
        their unused links), addresses changed since they were queued, whom a digest names."""
        cancelled = [c for c in batch if c.cancel]
        changed = [c for c in batch if c.address_changed or c.payload is not None]
        if cancelled or changed:
            with self.svc.db.write_core() as conn:
                for c in cancelled:
                    _cancel(conn, c, self.links.pop(c.outbox_id, None), self.now)
                for c in changed:
                    values = ({"payload": c.payload} if c.payload is not None
                              else {"to_email": c.to_email, "to_name": c.to_name})
                    conn.execute(update(Outbox.__table__).where(_OUTBOX.id == c.outbox_id)
                                 .values(**values))
        self.result.cancelled += len(cancelled)
        return [c for c in batch if not c.cancel]

    def send(self, todo: list[Composed], claimed_until: dt.datetime) -> bool:
        """Send one composed batch; True if the run must stop."""
        sent: list[Composed] = []  # taken by the server, its outcome not yet recorded: at most one

        def record() -> None:
            while sent:
                item = sent.pop()
                if self.ledger.sent(item, self.now):
                    self.handed.append(_handed(item, self.now))
                self.result.sent += 1
                self.unsent.remove(item.outbox_id)

        try:
            for index, item in enumerate(todo):
                if self.clock() > claimed_until - LEASE_MARGIN:
                    # The claim is running out (a very slow server): hand the rest back to be
                    # claimed afresh, rather than send what another tick may be about to claim.
                    record()
                    log.info("claim running out after %d of a batch of %d: handing %d back to "
                             "claim again", index, len(todo), len(todo) - index)
                    self.release([c.outbox_id for c in todo[index:]])
                    self.unsent.clear()
                    return False
                stop = self.send_one(item, meanwhile=record, before_data=self.ledger.finish)
                if stop:
                    return True
                self.links.pop(item.outbox_id, None)
                if stop is None:
                    sent.append(item)
                else:
                    self.unsent.remove(item.outbox_id)
            record()
            self.unsent.clear()  # the rest were cancelled by settle()
            return False
        finally:
            record()
            self.ledger.finish()

    def send_one(self, item: Composed, meanwhile, before_data) -> bool | None:
        """None if the server took it; False if it refused it (recorded); True if the run must
        stop (nothing recorded, nothing spent)."""
        result = self.result
        try:
            if self.conn is None:
                self.conn = _open()
            send(self.conn, item, meanwhile=meanwhile, before_data=before_data)
        except MailServerDown as exc:
            result.stopped = str(exc)
            return True
        except smtplib.SMTPSenderRefused as exc:
            # The server refuses us (login required, sender not allowed), not this recipient:
            # every message would meet the same, so stop and spend no attempts.
            result.stopped = f"the mail server refused the sender: {_reason(exc)}"
            return True
        except smtplib.SMTPResponseException as exc:
            _failure(self.svc, item.outbox_id, _reason(exc), 500 <= exc.smtp_code < 600, self.now,
                     result)
            if exc.smtp_code == 421:
                self.conn = _drop(self.conn)
        except smtplib.SMTPRecipientsRefused as exc:
            (code, text), = exc.recipients.values()
            _failure(self.svc, item.outbox_id, f"{code} {_text(text)}", 500 <= code < 600,
                     self.now, result)
        except (smtplib.SMTPException, OSError) as exc:
            # Dropped connection or timeout mid-message: try this one again later.
            _failure(self.svc, item.outbox_id, _reason(exc), False, self.now, result)
            self.conn = _drop(self.conn)
        else:
            return None
        return False

    def close(self) -> None:
        """Whatever this run claimed and did not send goes back now, without spending attempts,
        rather than waiting out its lease (a stop, a composing error, an interrupt); what was
        handed is followed through, or left for a later run to finish."""
        untaken: list[int] = []
        try:
            try:
                untaken = self.collect(take=False)
            finally:
                if self.handed:
                    handed, self.handed = self.handed, []
                    with self.ledger.transaction() as writer:
                        _follow_through(writer, handed)
                self.release(self.unsent + self.composer.outstanding() + untaken)
        finally:
            self.composer.close()
            self._close_turns()
            self.ledger.close()
            _drop(self.conn)

    def release(self, ids: list[int]) -> None:
        """Hand claims back without spending attempts, and drop the links made for them."""
        _release(self.svc, ids, self.worker, [self.links.pop(i) for i in ids if i in self.links])


class _Ledger:
    """The run's outcomes, on one raw connection held open (see RawWriter): each message's
    outcome is its own commit, thousands of them on the opening day."""

    def __init__(self, svc: Services):
        self.svc = svc
        self.writer: RawWriter | None = None

    def _writer(self) -> RawWriter:
        if self.writer is None:
            self.writer = self.svc.db.raw_writer()
        return self.writer

    def transaction(self):
        return self._writer().transaction()

    def sent(self, item: Composed, now: dt.datetime) -> bool:
        """Record that the server took `item`; True if its follow-through is still to write."""
        params = {"outbox_id": item.outbox_id, "now": now, "message_id": item.message_id}
        if item.kind == "digest":
            from .digest import mark_escalated

            with self.svc.db.write() as session:
                session.execute(_MARK_SENT, params)
                mark_escalated(session, session.get(Outbox, item.outbox_id), now)
            return False
        self._writer().start(_MARK_HANDED if item.advance else _MARK_SENT, params)  # one commit
        return item.advance is not None

    def finish(self) -> None:
        """Wait for the outcome sent() started to be stored."""
        if self.writer is not None:
            self.writer.finish()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@contextmanager
def _making_turns(run: _Run):
    """In the turns process (see _Run.turn()): each order a turn, one transaction on a connection
    of its own."""
    writer = run.svc.db.raw_writer()

    def turn(order: tuple) -> list[tuple]:
        with writer.transaction():
            return run._turn(writer, *order)

    try:
        yield turn
    finally:
        writer.close()


class _Handed(NamedTuple):
    """A message the server took, and what follows from it."""

    outbox_id: int
    advance: dict  # the request's clock: compose.advance()
    staff_id: int
    request_id: int
    stage: int
    message_id: str
    sent_at: dt.datetime


def _handed(item: Composed, sent_at: dt.datetime) -> _Handed:
    return _Handed(item.outbox_id, item.advance, item.staff_id, item.request_id, item.stage,
                   item.message_id, sent_at)


def _cancel(conn, item: Composed, link_hash: str | None, now: dt.datetime) -> None:
    values: dict[str, Any] = {"status": "cancelled", "claimed_until": None}
    if item.cancel == INACTIVE:
        # Free the key and step back, so that if they are made active again this cycle the
        # stage is asked for afresh.
        values["key"] = f"{item.key}:cancelled:{item.outbox_id}"
        step_back = item.stage - 1
        conn.execute(update(Request.__table__).where(_REQUEST.id == item.request_id)
                     .values(stage_sent=case((_REQUEST.stage_sent > step_back, step_back),
                                             else_=_REQUEST.stage_sent),
                             next_check_at=now))
    conn.execute(update(Outbox.__table__).where(_OUTBOX.id == item.outbox_id).values(**values))
    if link_hash is not None:  # made at the claim, never sent
        conn.execute(delete(Link.__table__).where(Link.__table__.c.token_sha256 == link_hash))


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


def _release(svc: Services, ids: list[int], worker: str, links: list[str] = ()) -> None:
    """Hand back claims without spending attempts: the server, not the message, was at fault.
    `links` are those made for these claims, never sent: a new claim makes new ones."""
    if not ids:
        return
    with svc.db.write_core() as conn:
        conn.execute(update(Outbox.__table__).where(_OUTBOX.id.in_(ids), _OUTBOX.claimed_by == worker)
                     .values(claimed_until=None, claimed_by=None))
        if links:
            conn.execute(delete(Link.__table__).where(Link.__table__.c.token_sha256.in_(links)))


_OUTBOX = Outbox.__table__.c
_REQUEST = Request.__table__.c
_WHEN = UTCDateTime()


def _claim_statement(dialect: str, status: str):
    """UPDATE … RETURNING the first due rows of one status. One status at a time, so each claim
    is an ordered walk of ix_outbox_ready (status, next_attempt_at, id) that stops at the limit;
    an IN over both statuses would sort every due row on every claim.

    On PostgreSQL the rows are picked as `id = ANY(ARRAY(…))`: the pick runs once and the update
    finds its rows by primary key. Planned as `IN (…)`, a semi-join, it may hash the pick and
    scan the whole outbox to apply it, once for every batch of the opening day.
    """
    now = bindparam("now", type_=_WHEN)
    ready = (select(_OUTBOX.id)
             .where(_OUTBOX.status == status, _OUTBOX.next_attempt_at <= now,
                    or_(_OUTBOX.claimed_until.is_(None), _OUTBOX.claimed_until < now))
             .order_by(_OUTBOX.next_attempt_at, _OUTBOX.id).limit(bindparam("limit"))
             .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has BEGIN IMMEDIATE
             .scalar_subquery())
    picked = (_OUTBOX.id == func.any(func.array(ready)) if dialect == "postgresql"
              else _OUTBOX.id.in_(ready))
    return (update(Outbox.__table__).where(picked)
            .values(claimed_until=bindparam("until", type_=_WHEN), claimed_by=bindparam("worker"))
            .returning(_OUTBOX.id, _OUTBOX.request_id, _OUTBOX.kind))


# Built once: these run once per email, so their construction would show up in the send rate.
_CLAIM = {(dialect, status): _claim_statement(dialect, status)
          for dialect in ("sqlite", "postgresql") for status in ("retrying", "pending")}
_ADD_LINK = insert(Link.__table__)
_MARK_SENT = (update(Outbox.__table__).where(_OUTBOX.id == bindparam("outbox_id"))
              .values(status="sent", sent_at=bindparam("now", type_=_WHEN),
                      message_id=bindparam("message_id"), attempts=_OUTBOX.attempts + 1,
                      claimed_until=None, last_error=None))
_MARK_HANDED = (update(Outbox.__table__).where(_OUTBOX.id == bindparam("outbox_id"))
                .values(status=HANDED, sent_at=bindparam("now", type_=_WHEN),
                        message_id=bindparam("message_id"), attempts=_OUTBOX.attempts + 1,
                        last_error=None))
_HANDED_TO_SENT = (update(Outbox.__table__)
                   .where(_OUTBOX.id == bindparam("outbox_id"), _OUTBOX.status == HANDED)
                   .values(status="sent", claimed_until=None).returning(_OUTBOX.id))
_ADVANCE = (update(Request.__table__).where(_REQUEST.id == bindparam("request_id")).values(
    last_message_at=bindparam("now", type_=_WHEN),
    reminded_at=func.coalesce(_REQUEST.reminded_at, bindparam("now", type_=_WHEN)),
    # An extension an admin set before the first reminder went out is kept.
    overdue_at=case((_REQUEST.reminded_at.is_(None),
                     func.coalesce(_REQUEST.due_extended_to, bindparam("overdue", type_=_WHEN))),
                    else_=_REQUEST.overdue_at),
    next_check_at=bindparam("next_check", type_=_WHEN)))


def _follow_through(writer: RawWriter, handed: list[_Handed]) -> None:
    """For handed messages: mark them sent, advance their requests, log them. Only rows still
    `handed` are touched, so the run that sent them and a later one recovering them cannot both
    do it."""
    mine = writer.returning_ids(_HANDED_TO_SENT, [{"outbox_id": h.outbox_id} for h in handed])
    handed = sorted((h for h in handed if h.outbox_id in mine), key=lambda h: h.sent_at)
    # One advance per request, the latest: a recovery may finish two of one person's emails.
    writer.executemany(_ADVANCE, list({h.request_id: h.advance for h in handed}.values()))
    writer.executemany(events.INSERT, [
        events.row("invited" if h.stage == planner.REMINDER else "reminded", h.sent_at,
                   staff_id=h.staff_id, request_id=h.request_id, stage=h.stage,
                   message_id=h.message_id)
        for h in handed])


def recover_handed(svc: Services, now: dt.datetime) -> int:
    """Finish what a run that died between a send and its batch's end left: messages the server
    took (so not to be sent again) whose follow-through was never written. Waits for the lease, so
    a run still going is left to finish its own."""
    with svc.db.read() as session:
        rows = session.execute(select(Outbox.id, Outbox.request_id, Outbox.stage,
                                      Outbox.message_id, Outbox.sent_at)
                               .where(Outbox.status == HANDED, Outbox.claimed_until < now)).all()
        if not rows:
            return 0
        requests = {r.id: r for r in session.scalars(
            select(Request).where(Request.id.in_([row.request_id for row in rows]))
            .options(*_WITH_STATE))}
        handed = [_Handed(row.id, advance(svc, requests[row.request_id], row.sent_at),
                          requests[row.request_id].staff_id, row.request_id, row.stage,
                          row.message_id, row.sent_at) for row in rows]
    writer = svc.db.raw_writer()
    try:
        with writer.transaction():
            _follow_through(writer, handed)
    finally:
        writer.close()
    return len(handed)


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
