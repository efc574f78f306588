"""The setting's policy library as stored: its schedule, its closures and its policies, each policy
with its own audience and its own calendar.

The database is the one place these live once `signoff init` has taken the config's [schedule],
[[closure]] and [[policy]] tables in (`seed`, once). Every tick, `plan`, report and page reads them
afresh (`load`), so a change made in the console acts at once, in every process, with no restart.
`export` prints them back as TOML.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from . import config as config_mod
from . import events, requests
from .calendar import Calendar
from .config import Config, Schedule
from .models import (Approval, Closure, Confirmation, Cycle, Policy, PolicyVersion, Request,
                     Setting, Staff)
from .policies import setting_id as policies_setting_id
from .policies import sha256

# Where a stored schedule's errors say they are (it was checked when it was written).
STORED = "the database"


@dataclass(frozen=True)
class Entry:
    """One policy as stored now: who it is for and its calendar (the setting's schedule with the
    policy's own keys over it, and the setting's closures)."""

    id: int
    slug: str
    title: str
    state: str  # active | paused (retired ones are not loaded)
    audience: tuple[str, ...]  # roster groups; empty: everyone
    overrides: dict[str, Any]  # its own [schedule] keys
    reminder_note: str | None
    calendar: Calendar

    @property
    def schedule(self) -> Schedule:
        return self.calendar.schedule

    @property
    def active(self) -> bool:
        return self.state == "active"

    def cycle_year(self, moment: dt.datetime) -> int:
        return self.calendar.cycle_year(moment)


@dataclass(frozen=True)
class Library:
    setting_id: int | None
    calendar: Calendar  # the setting's own schedule: the digest's rhythm; its time zone
    policies: tuple[Entry, ...]  # active and paused, in the console's order

    @property
    def tz(self) -> ZoneInfo:
        return self.calendar.tz

    @property
    def active(self) -> tuple[Entry, ...]:
        """The policies that are asked for and chased."""
        return tuple(e for e in self.policies if e.active)

    def get(self, policy_id: int) -> Entry | None:
        return next((e for e in self.policies if e.id == policy_id), None)

    def by_slug(self, slug: str) -> Entry | None:
        return next((e for e in self.policies if e.slug == slug), None)

    def with_closures(self, closures: tuple) -> Library:
        """This library as it would be with `closures` instead of its own (a console preview)."""
        def swapped(cal: Calendar) -> Calendar:
            return Calendar(cal.schedule, cal.tz, closures)
        return Library(self.setting_id, swapped(self.calendar), tuple(
            replace(e, calendar=swapped(e.calendar)) for e in self.policies))

    def next_turn(self, policy_id: int, at: dt.datetime) -> dt.datetime:
        """When a reminder or follow-up of the policy that comes due at `at`, for someone who has
        had their scheduled email that day, goes instead (one email a day): the policy's next
        sending day, at the earliest send time of any active policy, so that it goes with
        whatever else is due for them then."""
        entry = self.get(policy_id)
        cal = entry.calendar if entry is not None else self.calendar
        day = cal.send_day(cal.local_date(at) + dt.timedelta(days=1))
        return min([e.calendar.at_send_time(day) for e in self.active] or [cal.at_send_time(day)])

    def years(self, moment: dt.datetime) -> dict[int, int]:
        """Each policy's current cycle year at `moment`, by policy id."""
        return {e.id: e.cycle_year(moment) for e in self.policies}


def load(session: Session, config: Config) -> Library:
    """The library as stored now. Before the first `init` has seeded it, the config's schedule and
    closures (and no policies)."""
    setting = session.scalars(select(Setting).order_by(Setting.id).limit(1)).first()
    tz = config.setting.timezone
    if setting is None or setting.schedule is None:
        base = Calendar(config.schedule, tz, config.closures)
        return Library(setting.id if setting else None, base, ())
    closures = tuple(config_mod.Closure(c.name, c.first, c.last) for c in session.scalars(
        select(Closure).where(Closure.setting_id == setting.id).order_by(Closure.first, Closure.id)))
    schedule = config_mod.parse_schedule(setting.schedule, STORED, "schedule", stored=True)
    base = Calendar(schedule, tz, closures)
    entries = []
    for policy in session.scalars(_IN_USE.where(Policy.setting_id == setting.id)):
        entries.append(entry_of(policy, base))
    return Library(setting.id, base, tuple(entries))


def entry_of(policy: Policy, base: Calendar, overrides: dict[str, Any] | None = None,
             audience: tuple[str, ...] | None = None) -> Entry:
    """`policy` as an Entry over the setting's calendar `base`; `overrides` and `audience`, when
    given, in place of its stored ones (a console preview)."""
    own = dict(policy.schedule or {}) if overrides is None else overrides
    schedule = (config_mod.parse_schedule(own, STORED, f"policy {policy.slug} schedule",
                                          base.schedule, stored=True) if own else base.schedule)
    return Entry(id=policy.id, slug=policy.slug, title=policy.title, state=policy.state,
                 audience=policy.audience if audience is None else audience, overrides=own,
                 reminder_note=policy.reminder_note,
                 calendar=Calendar(schedule, base.tz, base.closures))


def cycle_year(setting_schedule: dict[str, Any] | None, own: dict[str, Any] | None, tz: ZoneInfo,
               moment: dt.datetime) -> int:
    """A policy's current cycle year from its stored schedule keys alone (the confirmation page
    reads them in its one query; closures do not move an opening)."""
    base = config_mod.parse_schedule(setting_schedule or {}, STORED, "schedule", stored=True)
    schedule = config_mod.parse_schedule(own, STORED, "policy schedule", base,
                                          stored=True) if own else base
    return Calendar(schedule, tz).cycle_year(moment)


_IN_USE = (select(Policy).where(Policy.state != "retired").order_by(Policy.position, Policy.id))


# The version in force is the latest approved; a policy's first text is in force from when it was
# loaded. The one home of that rule: the confirmation page's query asks IN_FORCE too.
IN_FORCE = PolicyVersion.in_force_at.is_not(None)


def current_version(session: Session, policy_id: int) -> PolicyVersion | None:
    """The version in force: the text staff are shown and confirm."""
    return session.scalars(select(PolicyVersion).where(PolicyVersion.policy_id == policy_id,
                                                       IN_FORCE)
                           .order_by(PolicyVersion.id.desc()).limit(1)).first()


def newest_version(session: Session, policy_id: int) -> PolicyVersion | None:
    """The newest version, proposed or in force: the one an approval is of."""
    return session.scalars(select(PolicyVersion).filter_by(policy_id=policy_id)
                           .order_by(PolicyVersion.id.desc()).limit(1)).first()


def proposal(session: Session, policy_id: int) -> PolicyVersion | None:
    """The version proposed after the one in force and not approved yet, if any."""
    newest = newest_version(session, policy_id)
    return newest if newest is not None and newest.in_force_at is None else None


CHANGES = ("material", "minor")  # what a later version is: see PolicyVersion.change


def add_version(session: Session, policy: Policy, text: str, statements: list[str],
                now: dt.datetime, actor: str | None = None, note: str | None = None,
                in_force: bool = False, change: str | None = None) -> PolicyVersion | None:
    """A new version of `policy` if its text or statements differ from its newest: in force at
    once if it is the policy's first (or `in_force`: the config's text, taken in by the first
    `init`), else proposed until approved (approve)."""
    newest = newest_version(session, policy.id)
    if (newest is not None and newest.sha256 == sha256(text)
            and list(newest.statements) == list(statements)):
        return None
    version = PolicyVersion(policy_id=policy.id, sha256=sha256(text), content=text,
                            statements=list(statements), created_at=now, proposed_by=actor,
                            note=note, change=change if newest is not None else None,
                            in_force_at=now if in_force or newest is None else None)
    session.add(version)
    session.flush()
    return version


def add_policy(session: Session, setting_id: int, *, slug: str, title: str, text: str,
               statements: list[str], schedule: dict[str, Any], reminder_note: str | None,
               audience: tuple[str, ...], review_every_months: int, actor: str,
               now: dt.datetime) -> Policy:
    """A new active policy, last in the setting's order, its first text in force at once (the
    console's new policy, and `signoff policy import`), recorded as `policy_added`."""
    position = session.scalar(select(func.max(Policy.position))
                              .where(Policy.setting_id == setting_id))
    policy = Policy(setting_id=setting_id, slug=slug, title=title, schedule=dict(schedule),
                    reminder_note=reminder_note, state="active", position=(position or 0) + 1,
                    review_every_months=review_every_months)
    policy.audience = audience
    session.add(policy)
    session.flush()
    version = add_version(session, policy, text, list(statements), now, actor=actor)
    events.record(session, "policy_added", now, actor=actor, policy=slug, title=title,
                  audience=list(audience), schedule=dict(schedule), version=version.sha256)
    return policy


def approve(session: Session, version: PolicyVersion, *, name: str, role: str,
            on: dt.date, minute: str | None, actor: str, now: dt.datetime) -> tuple[bool, int]:
    """Record one approval of `version` (the newest: see newest_version); the first puts a
    proposed version in force from `now`, and a material one asks again (ask_again). Returns
    whether it came into force, and how many were asked again."""
    session.add(Approval(policy_version_id=version.id, name=name, role=role, approved_on=on,
                         minute=minute, recorded_by=actor, recorded_at=now))
    came = version.in_force_at is None
    if came:
        version.in_force_at = now
    asked = ask_again(session, version, now) if came and version.change == "material" else 0
    policy = session.get(Policy, version.policy_id)
    # Approved (again, or a new text): its next review counts from this approval.
    policy.review_on = policy.review_reason = policy.review_set_by = None
    slug = policy.slug
    events.record(session, "version_approved", now, actor=actor, policy=slug,
                  version=version.sha256, name=name, role=role, on=on.isoformat(),
                  minute=minute, in_force=came, asked_again=asked)
    return came, asked


def ask_again(session: Session, version: PolicyVersion, now: dt.datetime) -> int:
    """A material change has come into force: everyone still on the roster who confirmed an older
    text in the policy's current cycle (its latest) is asked again. Their confirmation is kept,
    marked superseded; their request starts afresh, in a new round, so that the next tick sends
    them a first reminder (saying what changed) and follow-ups count from it. Returns how many."""
    cycle_id = session.scalar(select(Cycle.id).where(Cycle.policy_id == version.policy_id)
                              .order_by(Cycle.year.desc()).limit(1))
    if cycle_id is None:
        return 0
    older = (select(Confirmation.request_id).join(Request, Request.id == Confirmation.request_id)
             .join(Staff, Staff.id == Request.staff_id)
             .where(Request.cycle_id == cycle_id, Confirmation.superseded_at.is_(None),
                    Confirmation.policy_version_id != version.id, Staff.active))
    found = list(session.execute(select(Request.id, Request.staff_id)
                                 .where(Request.id.in_(older))))
    if not found:
        return 0
    # By the query, not by ids: a cycle of 50,000 would pass more parameters than SQLite takes.
    requests.ask_again(session, older, now)
    session.execute(update(Confirmation).where(Confirmation.request_id.in_(older),
                                               Confirmation.superseded_at.is_(None))
                    .values(superseded_at=now))
    session.execute(events.INSERT, [events.row("asked_again", now, staff_id=staff_id,
                                               request_id=request_id, version=version.sha256)
                                    for request_id, staff_id in found])
    return len(found)


def approved_line(approvals: list[Approval]) -> str | None:
    """The approvals in words, for the person's page and the evidence: "Approved by Jane Smith,
    Chair of Governors, on 14 November 2026, and by …"; None when none is recorded."""
    if not approvals:
        return None
    each = [f"{a.name}, {a.role}, on {a.approved_on:%-d %B %Y}" for a in approvals]
    return "Approved by " + ", and by ".join(each) + "."


def ensure_setting(session: Session, config: Config) -> Setting:
    """The setting this installation serves, made if need be; its name and time zone from the
    config. Locked (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises): two
    processes seeding at once must not both take the tables in."""
    setting = session.scalars(select(Setting).order_by(Setting.id).limit(1)
                              .with_for_update()).first()
    if setting is None:
        setting = Setting(name=config.setting.name, timezone=config.setting.timezone.key)
        session.add(setting)
        session.flush()
    else:
        setting.name, setting.timezone = config.setting.name, config.setting.timezone.key
    return setting


def seed(session: Session, config: Config, now: dt.datetime) -> bool:
    """Take the config's [schedule], [[closure]] and [[policy]] tables into a database that has not
    had them yet (a new one, or one from before policies lived in the database: its policies are
    matched by slug, and those the config no longer names are retired). Once it has, the stored
    ones are never overwritten (see `notice`). True if it took them in now."""
    setting = ensure_setting(session, config)
    if setting.schedule is not None:
        return False
    setting.schedule = config_mod.schedule_values(config.schedule)
    for closure in config.closures:
        session.add(Closure(setting_id=setting.id, name=closure.name, first=closure.first,
                            last=closure.last, created_at=now))
    known = {p.slug: p for p in session.scalars(select(Policy).filter_by(setting_id=setting.id))}
    for position, item in enumerate(config.policies):
        policy = known.pop(item.slug, None)
        if policy is None:
            policy = Policy(setting_id=setting.id, slug=item.slug)
            session.add(policy)
        policy.title, policy.schedule, policy.reminder_note = (item.title, dict(item.schedule),
                                                               item.reminder_note)
        policy.audience, policy.state, policy.position = item.audience, "active", position
        policy.review_every_months = item.review_every_months
        session.flush()
        add_version(session, policy, item.text, list(item.statements), now, in_force=True)
    for policy in known.values():  # dropped from the config before: left alone then, retired now
        policy.state = "retired"
    events.record(session, "library_seeded", now, source=str(config.path),
                  policies=[p.slug for p in config.policies],
                  closures=[c.name for c in config.closures])
    return True


def notice(session: Session, config: Config) -> str | None:
    """One line for `signoff init` if the config's tables differ from the stored ones, which are
    the ones in use."""
    if tables_of_config(config) == tables(session, policies_setting_id(session)):
        return None
    return (f"{config.path}: its [schedule], [[closure]] or [[policy]] tables differ from the ones "
            "stored in the database, which are the ones in use; change them in the console "
            "(Policies), or see them with `signoff policy export`")


# --- as TOML -----------------------------------------------------------------------------------

def tables(session: Session, setting_id: int | None) -> dict[str, Any]:
    """The stored library as the config's tables: [schedule], [[closure]], [[policy]] (each
    policy's text given inline, so that the tables are the whole of it)."""
    setting = session.get(Setting, setting_id) if setting_id is not None else None
    if setting is None or setting.schedule is None:
        return {"schedule": {}, "closure": [], "policy": []}
    closures = [{"name": c.name, "from": c.first, "to": c.last} for c in session.scalars(
        select(Closure).where(Closure.setting_id == setting_id).order_by(Closure.first, Closure.id))]
    found = []
    for policy in session.scalars(_IN_USE.where(Policy.setting_id == setting_id)):
        version = current_version(session, policy.id)
        found.append(_policy_table(policy.slug, policy.title, list(version.statements),
                                   policy.reminder_note, policy.audience, policy.schedule,
                                   version.content, policy.review_every_months))
    return {"schedule": dict(setting.schedule), "closure": closures, "policy": found}


def tables_of_config(config: Config) -> dict[str, Any]:
    """The config's own tables, in the same shape as `tables`, to compare them."""
    return {"schedule": config_mod.schedule_values(config.schedule),
            "closure": [{"name": c.name, "from": c.first, "to": c.last}
                        for c in sorted(config.closures, key=lambda c: c.first)],
            "policy": [_policy_table(p.slug, p.title, list(p.statements), p.reminder_note,
                                     p.audience, p.schedule, p.text, p.review_every_months)
                       for p in config.policies]}


def _policy_table(slug, title, statements, note, audience, schedule, text,
                  review_every_months) -> dict[str, Any]:
    table: dict[str, Any] = {"slug": slug, "title": title, "statements": statements}
    if note:
        table["reminder_note"] = note
    if audience:
        table["audience"] = list(audience)
    if review_every_months != 12:
        table["review_every_months"] = review_every_months
    table["text"] = text
    if schedule:
        table["schedule"] = dict(schedule)
    return table


def export(session: Session, setting_id: int | None, name: str, now: dt.datetime) -> str:
    """The stored library as TOML that a config file can hold (for a backup, or another setting's
    first `init`)."""
    import tomli_w

    found = tables(session, setting_id)
    if not found["closure"]:  # an empty array would be written as a key of the table above
        del found["closure"]
    body = tomli_w.dumps(found, multiline_strings=True)
    return (f"# The policies, schedule and closures of {name}, as stored on "
            f"{now.strftime('%Y-%m-%d %H:%M %Z').strip()}.\n"
            "# A new setting's `signoff init` takes these tables in; an existing one keeps its own.\n"
            f"\n{body}")
