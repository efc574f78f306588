"""`signoff policy import FILE.toml`: the inverse of `policy export`. The file's [schedule],
[[policy]] and [[closure]] tables change the stored library: a policy is matched by slug and
updated, or added (its text in force at once, as one created in the console); one the file leaves
out is left as it is; a changed text is proposed as a new version, as `policy version` would
(material unless the table says `change = "minor"`); the file's closures replace the stored ones.

What it changes in the coming emails is the plan before and after, read in the same transaction:
the change made, the requests already open re-planned (requests.after_change), the plan asked
again. A dry run then rolls it all back."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import config as config_mod
from . import events, library, requests, roster, timeline
from .errors import ConfigError
from .models import Closure, Policy, Setting
from .services import Services

# How far ahead the coming emails are compared, as `signoff plan` looks by default.
AHEAD = dt.timedelta(weeks=8)


@dataclass
class Outcome:
    """What an import changed in the library, and in the coming emails."""

    library: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)


def read(path: Path, stored: config_mod.Schedule) -> config_mod.Imported:
    """The file's tables, checked; an error names the file and the key."""
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_mod.parse_library(data, path, stored)


def run(svc: Services, path: Path, now: dt.datetime, actor: str, dry_run: bool) -> Outcome:
    """Import the file at `path` in one transaction (rolled back for a dry run)."""
    with svc.db.write() as session:
        before_lib = svc.library(session)
        if before_lib.setting_id is None:
            raise ConfigError(f"{path}: the database has no setting yet: run `signoff init` first")
        imported = read(path, before_lib.calendar.schedule)
        before = _coming(svc, session, before_lib, now)
        outcome = Outcome(library=apply(session, before_lib.setting_id, imported, now, actor))
        session.flush()
        after_lib = svc.library(session)
        requests.after_change(session, after_lib, now)
        outcome.emails = _differences(before, _coming(svc, session, after_lib, now), svc)
        if dry_run:
            session.rollback()
    return outcome


def apply(session: Session, setting_id: int, imported: config_mod.Imported, now: dt.datetime,
          actor: str) -> list[str]:
    """Make the file's changes, each an event in the log; returns them in words."""
    said: list[str] = []
    setting = session.get(Setting, setting_id)
    if imported.schedule is not None and imported.schedule != setting.schedule:
        events.record(session, "schedule_changed", now, actor=actor,
                      changes=[setting.schedule, imported.schedule])
        setting.schedule = imported.schedule
        said.append("the setting's schedule changed")
    known = {p.slug: p for p in session.scalars(select(Policy).filter_by(setting_id=setting_id))}
    for item, change, note in imported.policies:
        policy = known.get(item.slug)
        if policy is None:
            library.add_policy(session, setting_id, slug=item.slug, title=item.title,
                               text=item.text, statements=list(item.statements),
                               schedule=item.schedule, reminder_note=item.reminder_note,
                               audience=item.audience,
                               review_every_months=item.review_every_months, actor=actor, now=now)
            said.append(f"{item.slug}: added, its text in force at once")
            continue
        changes = {}
        for attr, value in (("title", item.title), ("reminder_note", item.reminder_note),
                            ("audience", list(item.audience)), ("schedule", dict(item.schedule)),
                            ("review_every_months", item.review_every_months),
                            ("state", "active")):
            old = list(policy.audience) if attr == "audience" else getattr(policy, attr)
            if old != value:
                changes[attr] = [roster.logged(old), roster.logged(value)]
                setattr(policy, attr, tuple(value) if attr == "audience" else value)
        version = library.add_version(session, policy, item.text, list(item.statements), now,
                                      actor=actor, note=note, change=change)
        if version is not None:
            changes["proposed"] = version.sha256
        if changes:
            events.record(session, "policy_changed", now, actor=actor, policy=item.slug,
                          changes=changes)
            words = [k.replace("_", " ") for k in changes if k != "proposed"]
            if version is not None:
                words.append(f"a new text proposed ({change}): it reaches staff once approved "
                             f"(`signoff policy approve {item.slug} …`)")
            said.append(f"{item.slug}: " + "; ".join(words))
    if imported.closures is not None:
        stored = [(c.name, c.first, c.last) for c in session.scalars(
            select(Closure).where(Closure.setting_id == setting_id)
            .order_by(Closure.first, Closure.id))]
        wanted = sorted((c.name, c.first, c.last) for c in imported.closures)
        if sorted(stored) != wanted:
            session.execute(delete(Closure).where(Closure.setting_id == setting_id))
            session.add_all(Closure(setting_id=setting_id, name=name, first=first, last=last,
                                    created_at=now) for name, first, last in wanted)
            events.record(session, "closures_replaced", now, actor=actor,
                          closures=[[n, f.isoformat(), t.isoformat()] for n, f, t in wanted])
            said.append(f"closures replaced: {len(wanted)} now"
                        + "".join(f"; {n} {f:%-d %b %Y} to {t:%-d %b %Y}" for n, f, t in wanted))
    return said


def _coming(svc: Services, session: Session, lib: library.Library,
            now: dt.datetime) -> Counter:
    """The coming emails, counted per moment, kind, policy and date to confirm by."""
    found: Counter = Counter()
    for b in timeline.batches(svc, session, now, now + AHEAD, lib):
        found[b.when, b.what, b.policy, b.confirm_by] += b.count
    return found


def _differences(before: Counter, after: Counter, svc: Services) -> list[str]:
    """The coming emails that the import adds ("+") and takes away ("-"), in time order."""
    lines = []
    for key in sorted(set(before) | set(after)):
        when, what, policy, by = key
        gone, new = before[key] - after[key], after[key] - before[key]
        for sign, n in (("-", gone), ("+", new)):
            if n > 0:
                who = "the head teacher" if policy == "all" else \
                    f"{n:,} {'person' if n == 1 else 'people'}"
                due = f", confirm by {dt.date.fromisoformat(by):%a %-d %b}" if by else ""
                lines.append(f"{sign} {when.astimezone(svc.tz):%a %-d %b %Y %H:%M}  {what}"
                             f"{'' if policy == 'all' else ' [' + policy + ']'} to {who}{due}")
    return lines

