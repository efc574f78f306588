"""The outbox: every email is a keyed row; one loop claims a due row, sends it, records its outcome.

A run (deliver()) goes as healthchecks' sendalerts does. Sender.handle_one() claims the oldest due
row with a conditional UPDATE under a lease, together with the personal link its email carries, in
a short commit before any SMTP I/O; renders it; sends it over the run's one SMTP connection; and
commits its outcome (the row sent, the person's clock advanced, the event logged) before the next
message goes. So a kill costs at most the one message that was on the wire: its lease runs out and
a later run sends it again. A stop or a Ctrl-C hands the claim back at once.

Transient refusals back off with jitter; a permanent one fails that message only; a throttling or
quota answer stops the run with nothing spent. The mail provider's limits: the claim holds back
what would make more than `max_per_day` in any 24 hours, and each message waits for its turn, one
every 60/`max_per_minute` seconds of real time, from the account's mail_pace row, which concurrent
ticks share.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import smtplib
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from flask_mail import BadHeaderError, Message
from sqlalchemy import ColumnElement, bindparam, delete, distinct, exists, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from . import digest, events, library, mailer, pacing, planner, policies, requests, tokens
from .models import (_WAITING_SQL, WAITING, Cycle, Link, MailPace, Outbox, PolicyVersion,
                     Request, Staff, UTCDateTime)
from .services import Services

log = logging.getLogger("signoff.outbox")
# Long enough for one message however slow the server (each SMTP step times out in
# [mail] timeout_seconds) and its turn under max_per_minute; a killed run's claim comes back then.
LEASE = dt.timedelta(minutes=15)
# A sent message's outcome that the database would not take is tried again for this long, less
# than the lease, so that no other run sends it meanwhile.
RECORD_MARGIN = dt.timedelta(minutes=1)
# What this process sent and could not record yet (a scheduler records it first, next tick).
UNRECORDED: list[tuple[Claim, Composed, dt.datetime]] = []
MAX_ATTEMPTS = 10
BACKOFF_BASE = dt.timedelta(minutes=5)
BACKOFF_CAP = dt.timedelta(hours=6)
PERSONAL = ("reminder", "followup")  # the kinds that carry a person's link

# Why a claimed message is not sent after all.
UNWANTED = "unwanted"  # confirmed, exempt, or last year's cycle; a digest with nobody overdue;
# a decline resolved, or a review approved or moved, before the head teacher's email went
INACTIVE = "inactive"  # the person was made inactive while it was queued


class MailServerDown(Exception):
    """The server cannot be used at all this run (unreachable, refused our login, throttling)."""


@dataclass
class RunResult:
    """What one deliver() did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    cancelled: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # this run's permanent ones
    stopped: str | None = None  # why the run stopped early, if it did
    waiting: int = 0  # due but held back: by the daily limit, or a server that asked us to wait
    waiting_line: str | None = None  # when those will have gone, under the provider's limits

    @property
    def failure_lines(self) -> list[str]:
        return [f"{f['to_email']}: {f['reason']}" for f in self.failures]


_O = Outbox.__table__.c
_later = Outbox.__table__.alias("later").c


def request_key(request_id: int, stage: int, round_: int = 0) -> str:
    """The key of a request's message for a stage: there is at most one of each, in each round
    (a material change to the policy asks again: round 1, 2…)."""
    again = f"r{round_}:" if round_ else ""
    return f"req:{request_id}:{again}{planner.stage_name(stage)}"


def resend_key(request_id: int) -> str:
    """An admin's "send a fresh link": as many as they ask for."""
    return f"req:{request_id}:resend:{uuid.uuid4().hex}"


def backoff(attempts: int) -> dt.timedelta:
    delay = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return delay * random.uniform(0.75, 1.25)


def enqueue(session, db_insert, *, key: str, kind: str, to_email: str, to_name: str,
            now: dt.datetime, stage: int | None = None, request_id: int | None = None,
            staff_id: int | None = None, payload: dict | None = None) -> None:
    """Add a message unless one with this key exists already (the key is what makes sends once-only)."""
    enqueue_many(session, db_insert, now, [dict(key=key, kind=kind, stage=stage,
                                                request_id=request_id, staff_id=staff_id,
                                                to_email=to_email, to_name=to_name,
                                                payload=payload)])


def enqueue_many(session, db_insert, now: dt.datetime, messages: list[dict]) -> None:
    """enqueue() for a batch, as one INSERT: the opening day queues thousands at once."""
    if messages:
        session.execute(db_insert(Outbox.__table__), [
            {"stage": None, "request_id": None, "staff_id": None, "payload": None, **m,
             "created_at": now, "status": "pending", "attempts": 0, "next_attempt_at": now}
            for m in messages])


def supersede(conn, request_ids: list[int], now: dt.datetime) -> int:
    """A later stage was just queued for each of these requests: an earlier one still waiting (a
    mail outage held it) is not sent as well, or the email would name the policy twice."""
    if not request_ids:
        return 0
    return conn.execute(update(Outbox.__table__).where(
        _O.request_id.in_(request_ids), _O.stage.is_not(None), _WAITING_SQL,
        _O.claimed_until.is_(None) | (_O.claimed_until < now),
        _O.stage < select(func.max(_later.stage)).where(
            _later.request_id == _O.request_id, _later.status == "pending",
            _later.stage.is_not(None)).scalar_subquery())
        .values(status="cancelled", last_error="superseded by a later reminder")).rowcount


def digest_waiting(session) -> bool:
    """A digest is queued and has not gone yet."""
    return bool(session.scalar(select(exists().where(_O.kind == "digest", _WAITING_SQL))))


# --- claiming ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One outbox row in a claimed email, and the personal link it carries (reminders and
    follow-ups: one link per policy)."""

    id: int
    kind: str
    stage: int | None
    request_id: int | None
    token: str | None = None
    link_sha256: str | None = None


@dataclass(frozen=True)
class Claim:
    """One email's rows, leased to this run. A digest, an alert or an admin's fresh link is one
    row; a person's scheduled email is every reminder and follow-up due for them, one per policy."""

    items: tuple[Item, ...]
    to_email: str
    to_name: str
    payload: dict | None = None
    staff_id: int | None = None

    @property
    def id(self) -> int:
        """The email's first row."""
        return self.items[0].id

    @property
    def kind(self) -> str:
        """The email's kind: a first reminder if any policy in it is asked for the first time."""
        kinds = {item.kind for item in self.items}
        return "reminder" if "reminder" in kinds else self.items[0].kind

    def without(self, gone: list[Item]) -> Claim:
        return replace(self, items=tuple(i for i in self.items if i not in gone))


_PACE = MailPace.__table__.c


def claim(conn, at: dt.datetime, worker: str, lib: library.Library) -> Claim | None:
    """Lease the next email to `worker` until `at` + LEASE, with the links it will carry.

    The oldest due row decides. A digest, an alert or a fresh link an admin asked for goes alone.
    A reminder or follow-up brings every other one due for the same person, so that they get one
    email naming each policy; unless they have had a scheduled email today (or another run is
    sending them one now), when what is due for them is held until the next day's first send
    time (see _hold). Claims of one person's rows take turns on their staff row (FOR UPDATE on
    PostgreSQL; on SQLite the write transaction began IMMEDIATE, so all claims take turns), so two
    ticks cannot each send them an email on the same day. The pick skips rows another tick has
    locked (FOR UPDATE SKIP LOCKED, on PostgreSQL).
    """
    while True:
        pick = conn.execute(_PICK, {"at": at, "setting": lib.setting_id}).first()
        if pick is None:
            return None
        if pick.staff_id is None or not _scheduled(pick.kind, pick.stage):
            rows = conn.execute(_CLAIM_ONE, {"row_id": pick.id, "at": at, "until": at + LEASE,
                                             "worker": worker}).all()
        else:
            conn.execute(_LOCK_STAFF, {"person": pick.staff_id})
            since = planner.day_starts(lib.calendar.local_date(at), lib.calendar)
            if conn.scalar(_HAD_TODAY, {"person": pick.staff_id, "since": since, "at": at}):
                _hold(conn, lib, pick.staff_id, at)
                continue
            rows = conn.execute(_CLAIM_PERSON, {"person": pick.staff_id, "at": at,
                                                "until": at + LEASE, "worker": worker}).all()
        if not rows:  # another run took it first
            continue
        rows.sort(key=lambda r: r.id)
        items = [Item(row.id, row.kind, row.stage, row.request_id,
                      *(tokens.new_token() if row.kind in PERSONAL else (None, None)))
                 for row in rows]
        links = [{"request_id": item.request_id, "token_sha256": item.link_sha256,
                  "created_at": at} for item in items if item.link_sha256 is not None]
        if links:
            conn.execute(_ADD_LINK, links)
        lead = rows[0]
        return Claim(tuple(items), lead.to_email, lead.to_name, lead.payload, lead.staff_id)


def _scheduled(kind: str, stage: int | None) -> bool:
    """A reminder or follow-up the schedule sent (an admin's fresh link has no stage)."""
    return kind in PERSONAL and stage is not None


def _hold(conn, lib: library.Library, staff_id: int, at: dt.datetime) -> None:
    """Hold what is due for the person until their next turn (Library.next_turn)."""
    for row in conn.execute(_DUE_FOR_PERSON, {"person": staff_id, "at": at}):
        conn.execute(update(Outbox.__table__).where(_O.id == row.id)
                     .values(next_attempt_at=lib.next_turn(row.policy_id, at)))


# Built once, as are the outcome's statements below: these run for every email.
_AT = bindparam("at", type_=UTCDateTime())
_FREE = (_O.claimed_until.is_(None) | (_O.claimed_until < _AT))
_DUE_NOW = (_WAITING_SQL, _O.next_attempt_at <= _AT, _FREE)


def of_setting(setting_id) -> ColumnElement[bool]:
    """A row of the setting `setting_id` (a value or a bind): one to a person of its staff, or to
    nobody on a roster (a digest, an alert: these name no setting). The person's setting is read
    by their id, row by row, as the claim walks the due rows: not every id of a large roster."""
    return _O.staff_id.is_(None) | (select(Staff.setting_id).where(Staff.id == _O.staff_id)
                                    .scalar_subquery() == setting_id)


# The condition is ix_outbox_due's own text, so both planners walk that index.
_PICK = (select(_O.id, _O.kind, _O.stage, _O.staff_id)
         .where(*_DUE_NOW, of_setting(bindparam("setting")))
         .order_by(_O.next_attempt_at, _O.id).limit(1)
         .with_for_update(skip_locked=True))  # rendered on PostgreSQL only
_RETURNED = (_O.id, _O.kind, _O.stage, _O.request_id, _O.to_email, _O.to_name, _O.payload,
             _O.staff_id)
_LEASE = {"claimed_until": bindparam("until", type_=UTCDateTime()),
          "claimed_by": bindparam("worker")}
_CLAIM_ONE = (update(Outbox.__table__).where(_O.id == bindparam("row_id"), *_DUE_NOW)
              .values(_LEASE).returning(*_RETURNED))
_PERSONS_DUE = (_O.staff_id == bindparam("person"), _O.kind.in_(PERSONAL),
                _O.stage.is_not(None), *_DUE_NOW)
# Rows another run has locked are skipped, not waited for: it locks its pick before the staff
# row, this run the staff row before these, and neither may wait on the other.
_CLAIM_PERSON = (update(Outbox.__table__)
                 .where(_O.id.in_(select(_O.id).where(*_PERSONS_DUE)
                                  .with_for_update(skip_locked=True)))
                 .values(_LEASE).returning(*_RETURNED))
_DUE_FOR_PERSON = (select(_O.id, Cycle.policy_id).join(Request, Request.id == _O.request_id)
                   .join(Cycle, Cycle.id == Request.cycle_id).where(*_PERSONS_DUE))
_LOCK_STAFF = select(Staff.id).where(Staff.id == bindparam("person")).with_for_update()
# A scheduled email went to them since the day began, or another run is sending them one now.
_HAD_TODAY = select(exists().where(
    _O.staff_id == bindparam("person"), _O.kind.in_(PERSONAL), _O.stage.is_not(None),
    ((_O.status == "sent") & (_O.sent_at >= bindparam("since", type_=UTCDateTime())))
    | (_O.status.in_(WAITING) & (_O.claimed_until >= _AT))))
_ADD_LINK = Link.__table__.insert()


@dataclass(frozen=True)
class Composed:
    """A claimed email, and which of its rows are not sent after all (UNWANTED or INACTIVE):
    all of them when there is no message."""

    message: Message | None = None
    cancelled: list[tuple[Item, str]] = field(default_factory=list)
    named: list[int] = field(default_factory=list)  # a digest's overdue requests
    due: dict[int, dt.date] = field(default_factory=dict)  # the date named for each request


class Limits:
    """The mail provider's limits ([mail] max_per_minute, max_per_day), kept in the database so
    that concurrent ticks share them. A wait for a turn ends early if `stopping` is set."""

    def __init__(self, svc: Services, stopping: threading.Event):
        cfg = svc.config.mail
        self.db = svc.db
        self.per_minute, self.per_day = cfg.max_per_minute, cfg.max_per_day
        self.account = f"{cfg.username or cfg.sender}@{cfg.server}:{cfg.port}"[:400]
        self.stopping = stopping

    def day_is_full(self, conn, at: dt.datetime) -> bool:
        """max_per_day have gone, or are claimed to go, in the 24 hours before `at`. Asked in the
        claim's transaction, with the account's row locked: two ticks cannot both take the last
        place of the day (SQLite's write lock does the same)."""
        if not self.per_day:
            return False
        self._account(conn)
        return _used_today(conn, at) >= self.per_day

    def wait_for_turn(self) -> bool:
        """Take the account's next turn, which moves on by 60/max_per_minute (in its own short
        commit, so concurrent ticks take turns from the one row), and wait until it comes.
        False if the wait was cut short by `stopping`."""
        if not self.per_minute:
            return not self.stopping.is_set()
        with self.db.write_core() as conn:
            turn = max(self._account(conn).timestamp(), time.time())
            conn.execute(update(MailPace.__table__).where(_PACE.account == self.account).values(
                next_at=dt.datetime.fromtimestamp(turn + 60 / self.per_minute, dt.timezone.utc)))
        return not self.stopping.wait(max(0.0, turn - time.time()))

    def _account(self, conn) -> dt.datetime:
        """The account's next turn, its row made if need be and locked until the transaction
        ends."""
        conn.execute(self.db.insert(MailPace.__table__).values(
            account=self.account, next_at=dt.datetime.fromtimestamp(0, dt.timezone.utc)))
        return conn.execute(select(_PACE.next_at).where(_PACE.account == self.account)
                            .with_for_update()).scalar_one()


def _used_today(conn, at: dt.datetime) -> int:
    """Emails (not rows: a person's email may carry several) gone in the 24 hours before `at`, or
    claimed to go (a run holds one email at a time)."""
    went = conn.scalar(select(func.count(distinct(_O.message_id)))
                       .where(_O.sent_at > at - pacing.DAY))
    going = conn.scalar(select(func.count(distinct(_O.claimed_by)))
                        .where(_O.claimed_until > at, _O.status.in_(WAITING)))
    return went + going


def waiting(svc: Services, session: Session, at: dt.datetime) -> tuple[int, str | None]:
    """How many emails are due and not yet gone at `at`, and, under the provider's limits, when
    they will all have gone ("4,200 emails waiting: all sent by Thu 3 Sep 08:40 at 30 a minute";
    None without limits, or when none wait). A person's reminders due together are one email."""
    due = (_WAITING_SQL, _O.next_attempt_at <= at, of_setting(policies.setting_id(session)))
    scheduled = _O.kind.in_(PERSONAL) & _O.stage.is_not(None)
    count = (session.scalar(select(func.count(distinct(_O.staff_id))).where(*due, scheduled))
             + session.scalar(select(func.count()).select_from(Outbox).where(*due, ~scheduled)))
    cfg = svc.config.mail
    if not count or not pacing.limited(cfg.max_per_minute, cfg.max_per_day):
        return count, None
    recent = session.scalars(select(func.min(_O.sent_at)).where(_O.sent_at > at - pacing.DAY)
                             .group_by(_O.message_id)) if cfg.max_per_day else []
    finish = pacing.all_sent_by(count, at, cfg.max_per_minute, cfg.max_per_day, recent)
    return count, pacing.describe(count, "email", finish, cfg.max_per_minute, svc.tz)


# --- one run -----------------------------------------------------------------------------------

def deliver(svc: Services, now: dt.datetime,
            stopping: threading.Event | None = None) -> RunResult:
    """Send everything that is due, one message at a time over one SMTP connection; then one
    alert to the office listing this run's failures, if any. Setting `stopping` (the scheduler's
    shutdown) ends the run after the message in hand, its claim handed back if it had not gone."""
    sender = Sender(svc, now, stopping or threading.Event())
    try:
        if not sender.record_unrecorded():
            return sender.result
        while sender.handle_one():
            pass
        if sender.queue_alert():
            while sender.handle_one():
                pass
        sender.note_waiting()
    finally:
        sender.close()
    return sender.result


class Sender:
    """One run: its worker id, its clock, its SMTP connection, and what it did."""

    def __init__(self, svc: Services, now: dt.datetime, stopping: threading.Event):
        self.svc, self.now = svc, now
        self.stopping = stopping
        self.limits = Limits(svc, stopping)
        self.result = RunResult()
        self.worker = uuid.uuid4().hex
        self.started = time.monotonic()
        self.conn: mailer.MailConnection | None = None
        self.held: Claim | None = None  # claimed, its outcome not yet committed
        with svc.db.read() as session:
            self.library = svc.library(session)  # the policies as stored when the run began

    def clock(self) -> dt.datetime:
        # The tick's `now` moved on by the time it has run: a paced run lasts hours, and each
        # claim's lease and each send's time are measured from when they happen.
        return self.now + dt.timedelta(seconds=time.monotonic() - self.started)

    def handle_one(self) -> bool:
        """Claim, send and record one message. False when there is nothing more this run may do:
        nothing due, the daily limit reached, or the run stopped."""
        if self.result.stopped:
            return False
        if self.stopping.is_set():
            self.stop("asked to stop")
            return False
        at = self.clock()
        with self.svc.db.write_core() as conn:
            if self.limits.day_is_full(conn, at):
                return False
            job = claim(conn, at, self.worker, self.library)
            if job is None:
                return False
        self.held = job
        try:
            self._handle(job)
        finally:
            if self.held is not None:  # stopped, interrupted or failed before an outcome
                self.release(self.held)
        return True

    def _handle(self, job: Claim) -> None:
        try:
            composed = self._compose(job)
        except Exception as exc:  # noqa: BLE001 — a template error, say: one line, not a traceback
            self.stop(f"cannot compose an email: {type(exc).__name__}: {exc}")
            return
        if composed.cancelled:
            self._cancel(composed.cancelled)
            job = self.held = job.without([item for item, _ in composed.cancelled])
        if composed.message is None:
            self.held = None
            return
        try:
            if self.conn is None:
                self.conn = _open()
            # Composed and connected already: the message itself starts on its turn.
            if not self.limits.wait_for_turn():
                self.stop("asked to stop")
                return
            self.conn.send(composed.message)
        except MailServerDown as exc:
            self.stop(str(exc))
        except BadHeaderError:
            self._failed(job, mailer.Refusal("a header of the message has a line break"))
        except (smtplib.SMTPException, OSError) as exc:
            why = mailer.refusal(exc)
            if why.code in (None, 421):  # a dropped line, a timeout, or a server closing on us
                self.conn = _drop(self.conn)
            if why.throttled:
                self.stop(f"the mail server asks us to slow down: {why.reason}")
            elif isinstance(exc, smtplib.SMTPSenderRefused):
                # The server refuses us (sender not allowed), not this recipient: every message
                # would meet the same, so stop and spend no attempts.
                self.stop(f"the mail server refused the sender: {why.reason}")
            else:
                self._failed(job, why)
        else:
            self._record_sent(job, composed)

    def _record_sent(self, job: Claim, composed: Composed) -> None:
        """Record a message that went. If the database will not take it (a full disk, say), the
        run stops: nothing else is claimed, and the outcome is written again, waiting longer each
        time, until the database takes it or the claim's lease is nearly out; a scheduler keeps
        it for its next tick after that (UNRECORDED). Only a process killed meanwhile leaves the
        message to go a second time, when its lease runs out."""
        wait, give_up = 0.25, time.monotonic() + (LEASE - RECORD_MARGIN).total_seconds()
        while True:
            try:
                self._sent(job, composed)
                return
            except SQLAlchemyError as exc:
                if not self.result.stopped:
                    self.stop(f"sent an email to {job.to_email} but the database would not record "
                              f"it ({_first_line(exc)}); it is recorded as soon as the database "
                              "takes writes again")
                    log.warning("%s", self.result.stopped)
                if time.monotonic() + wait > give_up or self.stopping.is_set():
                    UNRECORDED.append((job, composed, self.clock()))
                    self.held = None
                    return
                time.sleep(wait)
                wait = min(wait * 2, 30.0)

    def record_unrecorded(self) -> bool:
        """Before claiming anything, record what an earlier run of this process sent and could
        not record. False if the database still will not take it (the run then stops)."""
        while UNRECORDED:
            job, composed, at = UNRECORDED[0]
            try:
                self._sent(job, composed, at)
            except SQLAlchemyError as exc:
                self.stop(f"the database still will not record an email sent earlier "
                          f"({_first_line(exc)})")
                return False
            UNRECORDED.pop(0)
        return True

    def _compose(self, job: Claim) -> Composed:
        """The email for a claim, and which of its rows are not to be sent after all."""
        with self.svc.db.read() as session:
            if job.kind in PERSONAL:
                return self._compose_personal(session, job)
            if job.kind == "digest":
                ctx = digest.digest_context(self.svc, session, self.clock())
                if not ctx["overdue"]:
                    return Composed(cancelled=[(job.items[0], UNWANTED)])
                return Composed(mailer.make_message(job.kind, job.to_name, job.to_email, ctx),
                                named=[p.request_id for p in ctx["overdue"]])
            if job.kind in ("declined", "review"):
                from . import declines, reviews  # which queue these, with enqueue() from here

                ctx = (declines.email_context(self.svc, session, job.payload["decline_id"])
                       if job.kind == "declined"
                       else reviews.email_context(self.svc, session, job.payload))
                if ctx is None:  # resolved or moved before it went: nothing to tell any more
                    return Composed(cancelled=[(job.items[0], UNWANTED)])
                return Composed(mailer.make_message(job.kind, job.to_name, job.to_email, ctx))
        return Composed(mailer.make_message(job.kind, job.to_name, job.to_email,
                                            dict(job.payload or {})))

    def _compose_personal(self, session: Session, job: Claim) -> Composed:
        """One email to the person naming each policy in the claim that still wants them: the
        rest (confirmed, exempt, closed, paused, last year's) are cancelled."""
        found = {row.id: row for row in session.execute(
            _TO_COMPOSE, {"ids": [item.request_id for item in job.items]})}
        wanted, cancelled = [], []
        for item in job.items:
            row = found[item.request_id]
            entry = self.library.get(row.policy_id)
            current = (entry is not None and entry.active
                       and row.year == entry.cycle_year(self.clock()))  # not last year's
            if row.closed_at is not None or not row.active or not current:
                inactive = row.closed_at is None and not row.active
                cancelled.append((item, INACTIVE if inactive and item.stage is not None
                                  else UNWANTED))
            else:
                wanted.append((self.library.policies.index(entry), item, entry, row))
        if not wanted:
            return Composed(cancelled=cancelled)
        base_url = self.svc.config.setting.base_url
        items = [{**reminder_context(entry, row, item.stage or planner.REMINDER, self.clock()),
                  "link": f"{base_url}/c/{item.token}", "request_id": row.id}
                 for _, item, entry, row in sorted(wanted, key=lambda w: w[0])]
        person = wanted[0][3]
        kind = job.without([item for item, _ in cancelled]).kind
        return Composed(mailer.make_message(kind, person.name, person.email,
                                            personal_context(person, items)), cancelled,
                        due={i["request_id"]: i["due_date"] for i in items})

    # --- outcomes: each its own commit ---

    def _sent(self, job: Claim, composed: Composed, at: dt.datetime | None = None) -> None:
        """The rows sent, each person's clock advanced, each event logged: one commit, of Core
        statements (not the ORM's unit of work: this runs for every email of the opening day)."""
        message, at = composed.message, at or self.clock()
        name, address = message.recipients[0]
        # What the email said: the person's address and name as they were when it went.
        sent = [{"outbox_id": item.id, "at": at, "message_id": message.msgId,
                 "to_email": address, "to_name": name} for item in job.items]
        if job.kind == "digest":
            with self.svc.db.write() as session:
                session.execute(_MARK_SENT, sent)
                row = session.get(Outbox, job.items[0].id)
                row.payload = {"request_ids": composed.named}
                requests.escalated(session, composed.named, at, row.key)
        else:
            with self.svc.db.write_core() as conn:
                conn.execute(_MARK_SENT, sent)
                personal = [item for item in job.items if item.kind in PERSONAL]
                if personal:
                    staff_id = requests.after_outcome(conn, self.library,
                                                      [item.request_id for item in personal], at,
                                                      composed.due)
                    conn.execute(events.INSERT, [events.row(
                        "invited" if item.stage == planner.REMINDER else "reminded", at,
                        staff_id=staff_id, request_id=item.request_id, stage=item.stage,
                        message_id=message.msgId) for item in personal])
        self.held = None
        self.result.sent += 1

    def _failed(self, job: Claim, why: mailer.Refusal) -> None:
        """The email was refused: each of its rows waits to try again, or has failed for good."""
        at = self.clock()
        with self.svc.db.write() as session:
            rows = [session.get(Outbox, item.id) for item in job.items]
            attempts = max(row.attempts for row in rows) + 1
            retry = not why.permanent and attempts < MAX_ATTEMPTS
            delay = backoff(attempts)
            for row, item in zip(rows, job.items):
                row.attempts = attempts
                row.claimed_until = row.claimed_by = None
                row.last_error = why.reason
                _drop_link(session, item)  # never reached them
                if retry:
                    row.status, row.next_attempt_at = "retrying", at + delay
                    continue
                if not why.permanent:
                    row.last_error = f"gave up after {attempts} attempts: {why.reason}"
                row.status, row.failed_at = "failed", at
                staff_id = None
                if row.kind in PERSONAL:  # their clock starts all the same
                    staff_id = requests.after_outcome(session, self.library,
                                                      [row.request_id], at)
                events.record(session, "delivery_failed", at, staff_id=staff_id,
                              request_id=row.request_id, message=row.kind, to=row.to_email,
                              reason=row.last_error)
            if retry:
                self.result.retrying += 1
            else:
                self.result.failed += 1
                if job.kind != "alert":
                    self.result.failures.append({"to_email": job.to_email,
                                                 "to_name": job.to_name, "kind": job.kind,
                                                 "reason": rows[0].last_error})
        self.held = None

    def _cancel(self, cancelled: list[tuple[Item, str]]) -> None:
        with self.svc.db.write() as session:
            for item, why in cancelled:
                row = session.get(Outbox, item.id)
                row.status, row.claimed_until, row.claimed_by = "cancelled", None, None
                if why == INACTIVE:
                    # Free the key and step back, so that if they are made active again this
                    # cycle the stage is asked for afresh.
                    row.key = f"{row.key}:cancelled:{row.id}"
                    requests.step_back(session, row.request_id, row.stage, self.clock())
                _drop_link(session, item)
                self.result.cancelled += 1

    def release(self, job: Claim) -> None:
        """Hand a claim back without spending an attempt: the run stopped, not the message."""
        with self.svc.db.write() as session:
            session.execute(update(Outbox.__table__)
                            .where(_O.id.in_([item.id for item in job.items]),
                                   _O.claimed_by == self.worker)
                            .values(claimed_until=None, claimed_by=None))
            for item in job.items:
                _drop_link(session, item)
        self.held = None

    def stop(self, why: str) -> None:
        self.result.stopped = why

    def queue_alert(self) -> bool:
        """One email to the office listing this run's failures (not one per failure: the mailbox
        may be throttled already). True if one was queued."""
        admin = self.svc.config.mail.admin_email
        if not admin or not self.result.failures:
            return False
        with self.svc.db.write() as session:
            enqueue(session, self.svc.db.insert, key=f"alert:{self.worker}", kind="alert",
                    to_email=admin, to_name="", now=self.clock(),
                    payload={"failures": self.result.failures})
        return True

    def note_waiting(self) -> None:
        with self.svc.db.read() as session:
            self.result.waiting, self.result.waiting_line = waiting(self.svc, session,
                                                                    self.clock())

    def close(self) -> None:
        self.conn = _drop(self.conn)


# A person's email's requests, with what composing it reads (the person, the cycle), in one query.
_material = aliased(PolicyVersion)
_TO_COMPOSE = (select(Request.id, Request.closed_at, Request.reminded_at, Request.due_extended_to,
                      Request.named_due,
                      Cycle.policy_id, Cycle.year, Staff.active, Staff.name, Staff.first_name,
                      Staff.email, Request.round,
                      # Asked again after a material change: what it changed, in its note.
                      select(_material.note).where(_material.policy_id == Cycle.policy_id,
                                                   _material.in_force_at.is_not(None),
                                                   _material.change == "material")
                      .order_by(_material.id.desc()).limit(1).scalar_subquery()
                      .label("material_note"))
               .join(Cycle, Cycle.id == Request.cycle_id).join(Staff, Staff.id == Request.staff_id)
               .where(Request.id.in_(bindparam("ids", expanding=True))))
_R = Request.__table__.c
_MARK_SENT = (update(Outbox.__table__).where(_O.id == bindparam("outbox_id"))
              .values(status="sent", sent_at=_AT,
                      message_id=bindparam("message_id"), attempts=_O.attempts + 1,
                      claimed_until=None, claimed_by=None, last_error=None,
                      to_email=bindparam("to_email"), to_name=bindparam("to_name")))
def _drop_link(session: Session, item: Item) -> None:
    if item.link_sha256 is not None:
        session.execute(delete(Link.__table__).where(Link.token_sha256 == item.link_sha256))


def reminder_context(entry: library.Entry, request: Any, stage: int,
                     now: dt.datetime) -> dict[str, Any]:
    """What a reminder or follow-up says about `request` (of the policy `entry`; anything with
    its `reminded_at` and `due_extended_to`): one item of the person's email. Its `link` is added
    by whoever has one."""
    cal = entry.calendar
    due = requests.due_on(request.reminded_at or now, request.due_extended_to,
                          getattr(request, "named_due", None), cal)
    return {
        "policy": entry,
        "stage": stage,
        "stage_label": planner.stage_label(stage),
        "due_date": due,
        # After downtime a follow-up may go once its date has passed: it says so, not the date.
        "due_passed": due < cal.local_date(now),
        "first_sent": request.reminded_at.astimezone(cal.tz) if request.reminded_at else None,
        "policy_note": entry.reminder_note,
        # Asked again this cycle: the policy changed since they confirmed it.
        "changed": (getattr(request, "material_note", None) or "its text changed")
                   if getattr(request, "round", 0) else None,
    }


def personal_context(person: Any, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A person's email: each policy's item (see reminder_context), the earliest date to confirm
    by first for the subject; one item's keys at the top too, for the one-policy wording."""
    return {**items[0], "person": person, "greeting": mailer.greeting_name(person),
            "items": items, "first_due": min(item["due_date"] for item in items),
            "first_passed": any(item.get("due_passed") for item in items)}


def _first_line(exc: Exception) -> str:
    """A database error in a line, without SQLAlchemy's statement and background link."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


def _open() -> mailer.MailConnection:
    conn = mailer.connect()
    try:
        conn.__enter__()
    except smtplib.SMTPAuthenticationError as exc:
        raise MailServerDown(f"the mail server refused the login: "
                             f"{mailer.refusal(exc).reason}") from None
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        why = mailer.refusal(exc)
        if why.throttled:
            raise MailServerDown(f"the mail server asks us to slow down: {why.reason}") from None
        cfg = conn.mail
        raise MailServerDown(f"cannot reach the mail server {cfg.server}:{cfg.port}: "
                             f"{why.reason}") from None
    return conn


def _drop(conn: mailer.MailConnection | None) -> None:
    if conn is not None and conn.host is not None:
        try:
            conn.host.quit()
        except (smtplib.SMTPException, OSError):
            conn.host.close()
    return None
