"""The tables: setting, staff, policies and their versions, cycles, requests, links, confirmations,
the outbox of messages and the append-only event log.

Portable SQLAlchemy 2 only (nothing SQLite-specific), so the same models run on PostgreSQL.
Times are stored as UTC and always come back timezone-aware.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (JSON, Boolean, Date, DateTime, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, String, Text, TypeDecorator, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime}


def _named_rows(rows: list, names, make) -> list:
    """Child rows for `names`, each once: rows whose name stays are kept, since a new row beside
    the old one of the same name would break the unique constraint before the old is deleted."""
    kept = {row.name: row for row in rows}
    return [kept.get(name) or make(name=name) for name in dict.fromkeys(names)]


class Setting(Base):
    __tablename__ = "setting"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    # The setting's [schedule], as its TOML keys and values; every policy's schedule starts from
    # it. NULL until the first `init` has taken the config's policy tables in (library.seed).
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Staff(Base):
    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("setting_id", "email"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    setting_id: Mapped[int] = mapped_column(ForeignKey("setting.id"))
    email: Mapped[str] = mapped_column(String(320))  # stored lower-case
    name: Mapped[str] = mapped_column(String(200))  # in full: reports, the digest, the console
    first_name: Mapped[str] = mapped_column(String(100), default="")  # greetings ("Dear Amira")
    role: Mapped[str] = mapped_column(String(100), default="")
    start_date: Mapped[dt.date | None] = mapped_column(Date)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    group_rows: Mapped[list[StaffGroup]] = relationship(
        cascade="all, delete-orphan", order_by="StaffGroup.id", lazy="selectin")

    @property
    def groups(self) -> tuple[str, ...]:
        """Roster groups, e.g. ("teaching", "first aid"): what a policy's audience names."""
        return tuple(g.name for g in self.group_rows)

    @groups.setter
    def groups(self, names) -> None:
        self.group_rows = _named_rows(self.group_rows, names, StaffGroup)


class StaffGroup(Base):
    """One of a person's roster groups. Matched to a policy's audience ignoring case."""

    __tablename__ = "staff_group"
    __table_args__ = (UniqueConstraint("staff_id", "name"),
                      Index("ix_staff_group_name", "name", "staff_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))


# A policy's state: active ones are asked for and chased; paused ones are shown and counted but
# nothing about them is sent; retired ones are gone from every page but their evidence.
POLICY_STATES = ("active", "paused", "retired")


class Policy(Base):
    __tablename__ = "policy"
    __table_args__ = (UniqueConstraint("setting_id", "slug"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    setting_id: Mapped[int] = mapped_column(ForeignKey("setting.id"))
    slug: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))
    # The keys of [schedule] this policy sets for itself ({}: all the setting's).
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reminder_note: Mapped[str | None] = mapped_column(Text)  # one more thing its reminder asks
    state: Mapped[str] = mapped_column(String(10), default="active")
    position: Mapped[int] = mapped_column(Integer, default=0)  # the order pages list policies in
    # Its review: due review_every_months after the latest approval of the text in force, unless
    # set by hand or brought forward by an early review (review_on, with why and by whom); a new
    # approval clears that. See reviews.py.
    review_every_months: Mapped[int] = mapped_column(Integer, default=12)
    review_on: Mapped[dt.date | None] = mapped_column(Date)
    review_reason: Mapped[str | None] = mapped_column(Text)
    review_set_by: Mapped[str | None] = mapped_column(String(320))
    audience_rows: Mapped[list[PolicyAudience]] = relationship(
        cascade="all, delete-orphan", order_by="PolicyAudience.id", lazy="selectin")

    @property
    def audience(self) -> tuple[str, ...]:
        """The roster groups it is for; empty: everyone."""
        return tuple(a.name for a in self.audience_rows)

    @audience.setter
    def audience(self, names) -> None:
        self.audience_rows = _named_rows(self.audience_rows, names, PolicyAudience)


class PolicyAudience(Base):
    """One roster group a policy is for."""

    __tablename__ = "policy_audience"
    __table_args__ = (UniqueConstraint("policy_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))


class Closure(Base):
    """Days the setting is closed (a holiday, INSET days), inclusive: nothing scheduled goes."""

    __tablename__ = "closure"
    id: Mapped[int] = mapped_column(primary_key=True)
    setting_id: Mapped[int] = mapped_column(ForeignKey("setting.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    first: Mapped[dt.date] = mapped_column(Date)
    last: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime]


class PolicyVersion(Base):
    """A text of a policy, with its statements. A policy's first text is in force at once; a
    later one is proposed, and reaches staff only once approved (its first Approval): the version
    in force is the latest approved. See library.current_version."""

    __tablename__ = "policy_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))  # of the Markdown text, as stored
    content: Mapped[str] = mapped_column(Text)
    statements: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime]  # proposed (or loaded) then
    proposed_by: Mapped[str | None] = mapped_column(String(320))
    note: Mapped[str | None] = mapped_column(Text)  # what changed, in the proposer's words
    # material: once in force, everyone who confirmed an older text this cycle is asked again;
    # minor: their confirmations stand. None: a policy's first text.
    change: Mapped[str | None] = mapped_column(String(10))
    in_force_at: Mapped[dt.datetime | None]  # None: proposed, not approved yet
    approvals: Mapped[list[Approval]] = relationship(order_by="Approval.id",
                                                     back_populates="version")


class Approval(Base):
    """One approval of a policy version: by whom (name, role: Chair of Governors, Head Teacher…),
    on which date, at which meeting (minute reference), as the office recorded it."""

    __tablename__ = "approval"
    id: Mapped[int] = mapped_column(primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_version.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(200))
    approved_on: Mapped[dt.date] = mapped_column(Date)
    minute: Mapped[str | None] = mapped_column(String(200))
    recorded_by: Mapped[str] = mapped_column(String(320))
    recorded_at: Mapped[dt.datetime]
    version: Mapped[PolicyVersion] = relationship(back_populates="approvals")


class Cycle(Base):
    __tablename__ = "cycle"
    __table_args__ = (UniqueConstraint("policy_id", "year"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policy.id"))
    year: Mapped[int] = mapped_column(Integer)
    opens_at: Mapped[dt.datetime]  # the nominal opening; sends may go later (working days)
    created_at: Mapped[dt.datetime]
    policy: Mapped[Policy] = relationship()


class Request(Base):
    """One person's sign-off in one cycle."""

    __tablename__ = "request"
    __table_args__ = (
        UniqueConstraint("cycle_id", "staff_id"),
        Index("ix_request_open_next", "next_check_at"),
        Index("ix_request_open_overdue", "overdue_at"),
        # The few requests closed as no longer applying: each tick looks for any back in their
        # policy's audience, and must not read every request to find none.
        Index("ix_request_dropped", "cycle_id", sqlite_where=text("dropped_at IS NOT NULL"),
              postgresql_where=text("dropped_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycle.id"))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    created_at: Mapped[dt.datetime]
    stage_sent: Mapped[int] = mapped_column(Integer, default=-1)
    reminded_at: Mapped[dt.datetime | None]  # the first reminder's outcome (sent or failed)
    last_message_at: Mapped[dt.datetime | None]
    # Set while the request is open (not confirmed, not exempt, person active); NULL otherwise,
    # so the tick's queries touch only the requests that need something.
    next_check_at: Mapped[dt.datetime | None]
    overdue_at: Mapped[dt.datetime | None]
    escalated_at: Mapped[dt.datetime | None]  # first named in a head-teacher digest
    due_extended_to: Mapped[dt.datetime | None]
    # The date to confirm by that the latest email to the person named: a change to the rules
    # never moves their date earlier than this (requests.confirm_by).
    named_due: Mapped[dt.date | None] = mapped_column(Date)
    exempt_reason: Mapped[str | None] = mapped_column(Text)
    exempt_at: Mapped[dt.datetime | None]
    # The person left the policy's audience (their groups, or its audience, changed) before
    # confirming: nothing more is sent. Kept, never deleted; cleared if they are in it again.
    dropped_at: Mapped[dt.datetime | None]
    # The person said they cannot confirm (see Decline): nothing more is sent until the head
    # teacher or the office resolves it. Cleared then, or when they confirm after all.
    declined_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]  # confirmed, exempt, dropped or declined
    # How many times a material change has asked them again this cycle: each time their
    # reminders start afresh, with outbox keys of their own (outbox.request_key).
    round: Mapped[int] = mapped_column(Integer, default=0)
    cycle: Mapped[Cycle] = relationship()
    staff: Mapped[Staff] = relationship()


class Link(Base):
    """A personal link. Only the token's SHA-256 is stored; each email carries a fresh token, and
    every live token of a request works, so an older email's link keeps working."""

    __tablename__ = "link"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("request.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    request: Mapped[Request] = relationship()


class Confirmation(Base):
    __tablename__ = "confirmation"
    __table_args__ = (
        # One live confirmation a request: twenty simultaneous POSTs still make one. One that a
        # material change superseded is kept beside it, for the evidence.
        Index("uq_confirmation_live", "request_id", unique=True,
              sqlite_where=text("superseded_at IS NULL"),
              postgresql_where=text("superseded_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("request.id"))
    confirmed_at: Mapped[dt.datetime]
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_version.id"))
    version_sha256: Mapped[str] = mapped_column(String(64))
    statements: Mapped[list[str]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(20), default="self")  # self | paper
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    recorded_by: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str | None] = mapped_column(Text)  # a paper sign-off's note: the office's own
    signed_on: Mapped[dt.date | None] = mapped_column(Date)  # paper: the date on the form
    paper_kept: Mapped[str | None] = mapped_column(String(200))  # paper: where the form is kept
    # A material change to the policy came into force after it: they were asked again.
    superseded_at: Mapped[dt.datetime | None]
    policy_version: Mapped[PolicyVersion] = relationship()


class Decline(Base):
    """A person said on their page that they cannot confirm a policy this cycle: which statement
    (None: the policy as a whole) and why. Kept for the evidence, never deleted, with how it was
    resolved: reopened (asked again), excused (exempt this cycle), or confirmed (they confirmed
    after all)."""

    __tablename__ = "decline"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("request.id"), index=True)
    declined_at: Mapped[dt.datetime]
    statement: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    ip_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    resolved_at: Mapped[dt.datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(320))
    outcome: Mapped[str | None] = mapped_column(String(20))  # reopened | excused | confirmed
    resolution: Mapped[str | None] = mapped_column(Text)  # the note of who resolved it
    request: Mapped[Request] = relationship()


# The statuses an outbox row may be claimed in; the claim's partial index is over exactly these.
WAITING = ("pending", "retrying")
_WAITING_SQL = text("status IN ('pending', 'retrying')")


class Outbox(Base):
    """Every email, as a row keyed so that it exists at most once: claimed, sent, retried here."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The claim walks this in order and stops at its first free row.
        Index("ix_outbox_due", "next_attempt_at", "id", sqlite_where=_WAITING_SQL,
              postgresql_where=_WAITING_SQL),
        # The daily limit counts what went in the last 24 hours, and what is claimed to go.
        Index("ix_outbox_sent_at", "sent_at"),
        Index("ix_outbox_claimed_until", "claimed_until"),
        # One email a day: what a person has had today, and what else is due for them.
        Index("ix_outbox_staff_id", "staff_id", "sent_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    # reminder | followup | digest | alert | declined | review
    kind: Mapped[str] = mapped_column(String(20))
    stage: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("request.id"), index=True)
    # Whom a reminder or follow-up goes to: the send loop bundles by it (see outbox.claim).
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    to_email: Mapped[str] = mapped_column(String(320))
    to_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    # pending -> sent | failed | cancelled; `retrying` is pending after a transient refusal.
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime]
    claimed_until: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(40))
    sent_at: Mapped[dt.datetime | None]
    failed_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(300))
    payload: Mapped[dict | None] = mapped_column(JSON)


class MailPace(Base):
    """When the next email may start, per mail account, in real time: every tick that sends
    through the account takes its turn from this row, so concurrent ticks share one pace."""

    __tablename__ = "mail_pace"
    account: Mapped[str] = mapped_column(String(400), primary_key=True)
    next_at: Mapped[dt.datetime]


class Event(Base):
    """Append-only log of what happened, for the evidence trail. Never updated or deleted."""

    __tablename__ = "event"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(320), default="system")
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    request_id: Mapped[int | None] = mapped_column(ForeignKey("request.id"), index=True)
    detail: Mapped[dict | None] = mapped_column(JSON)


class TickRun(Base):
    """One line per tick, so operators (and the console) can see the scheduler is alive."""

    __tablename__ = "tick_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    ok: Mapped[bool | None] = mapped_column(Boolean)
    summary: Mapped[str | None] = mapped_column(Text)


class AdminUser(Base):
    """Someone who may use the console at /admin. Added and removed with `signoff admin`."""

    __tablename__ = "admin_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    password_hash: Mapped[str] = mapped_column(String(255))  # werkzeug scrypt
    # What the login cookie names instead of the id: changing the password makes a new one,
    # which signs out every existing session of that admin.
    session_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    last_login_at: Mapped[dt.datetime | None]


class LoginAttempt(Base):
    """Console sign-in attempts, counted per address and per IP to slow down password guessing.
    Kept in the database so every web worker and process sees the same count."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_email_at", "email", "at"),
                      Index("ix_login_attempt_ip_at", "ip", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime]
    email: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool] = mapped_column(Boolean, default=False)


class RosterUpload(Base):
    """A roster file uploaded in the console, kept between its preview and being applied: by the
    admin who uploaded it, once (applying deletes it). `tick` removes any left after a day."""

    __tablename__ = "roster_upload"
    id: Mapped[int] = mapped_column(primary_key=True)
    setting_id: Mapped[int] = mapped_column(ForeignKey("setting.id"))
    admin_id: Mapped[int] = mapped_column(ForeignKey("admin_user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    full: Mapped[bool] = mapped_column(Boolean, default=False)  # the whole staff list
    columns: Mapped[dict[str, int] | None] = mapped_column(JSON)  # chosen where headings are not known
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
