"""The staff roster: a CSV validated whole, then upserted by address in one transaction.

All-or-nothing: every bad line is reported by its line number and nothing is stored, so a typo never
leaves half a roster behind. Nobody is deleted; `active=no` makes a person inactive.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import unicodedata
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import events
from .models import RosterUpload, Staff

NAME_MAX, ROLE_MAX = 200, 100  # the columns' sizes; the console's forms ask the same
UPLOAD_KEEP = dt.timedelta(days=1)  # a console upload not applied by then is removed by the tick
REQUIRED = ("name", "email")
OPTIONAL = ("role", "start_date", "active")
_YES = {"yes": True, "true": True, "y": True, "1": True,
        "no": False, "false": False, "n": False, "0": False}


class RosterError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Row:
    line: int
    name: str
    email: str
    role: str | None
    start_date: dt.date | None
    active: bool | None


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    deactivated: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, "
                f"{len(self.deactivated)} made inactive, {self.unchanged} unchanged")


def clean_text(value: str) -> str:
    """Names come from spreadsheets: drop control characters (no header injection), fold spaces."""
    kept = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in value)
    return " ".join(kept.split())


def parse(data: bytes, source: str) -> list[Row]:
    """Every row, validated; RosterError lists every problem as `source: line N: …`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RosterError([f"{source}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8"]) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [clean_text(h or "").lower() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise RosterError([f"{source}: line 1: missing column(s) {', '.join(missing)} "
                           f"(columns: name,email and optionally {','.join(OPTIONAL)})"])
    unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
    problems: list[str] = []
    if unknown:
        problems.append(f"{source}: line 1: unknown column(s) {', '.join(unknown)}")
    reader.fieldnames = header
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if None in record:
            problems.append(f"{source}: line {line}: more fields than columns")
            continue
        values = {k: (v or "") for k, v in record.items()}
        if not any(v.strip() for v in values.values()):
            continue  # blank lines at the end of a spreadsheet export
        errors = []
        name = clean_text(values["name"])
        if not name:
            errors.append("name is empty")
        elif len(name) > NAME_MAX:
            errors.append(f"name is longer than {NAME_MAX} characters")
        email = values["email"].strip()
        try:
            email = validate_email(email, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            errors.append(f"email {email!r} is not valid ({exc})")
        start_date = None
        if values.get("start_date", "").strip():
            try:
                start_date = dt.date.fromisoformat(values["start_date"].strip())
            except ValueError:
                errors.append(f"start_date {values['start_date'].strip()!r} is not YYYY-MM-DD")
        active = None
        if values.get("active", "").strip():
            active = _YES.get(values["active"].strip().lower())
            if active is None:
                errors.append(f"active {values['active'].strip()!r} is not yes/no/true/false")
        role = clean_text(values["role"]) if "role" in values else None
        if role and len(role) > ROLE_MAX:
            errors.append(f"role is longer than {ROLE_MAX} characters")
        if not errors and email in first_line:
            errors.append(f"{email} is already on line {first_line[email]}")
        if errors:
            problems.append(f"{source}: line {line}: " + "; ".join(errors))
            continue
        first_line[email] = line
        rows.append(Row(line, name, email, role, start_date, active))
    if problems:
        raise RosterError(problems)
    if not rows:
        raise RosterError([f"{source}: no staff rows found"])
    return rows


def apply(session: Session, setting_id: int, rows: list[Row], now: dt.datetime,
          actor: str = "system") -> ImportResult:
    """Upsert by address (case-insensitive). Columns left out of the CSV keep their stored values."""
    result = ImportResult()
    existing = {s.email: s for s in session.scalars(
        select(Staff).where(Staff.setting_id == setting_id,
                            Staff.email.in_([r.email for r in rows])))}
    for row in rows:
        person = existing.get(row.email)
        if person is None:
            person = Staff(setting_id=setting_id, email=row.email, name=row.name,
                           role=row.role or "", start_date=row.start_date,
                           active=True if row.active is None else row.active,
                           created_at=now, updated_at=now)
            session.add(person)
            session.flush()
            result.added.append(row.email)
            events.record(session, "staff_added", now, actor=actor, staff_id=person.id,
                          name=row.name, active=person.active)
            continue
        changes = {}
        for attr, value in (("name", row.name), ("role", row.role), ("start_date", row.start_date),
                            ("active", row.active)):
            if value is None and attr != "name":
                continue
            if getattr(person, attr) != value:
                before = getattr(person, attr)
                changes[attr] = [str(before) if before is not None else None,
                                 str(value) if value is not None else None]
                setattr(person, attr, value)
        if not changes:
            result.unchanged += 1
            continue
        person.updated_at = now
        if "active" in changes and row.active is False:
            result.deactivated.append(row.email)
        else:
            result.updated.append(row.email)
        events.record(session, "staff_updated", now, actor=actor, staff_id=person.id, changes=changes)
    return result


def forget_uploads(session: Session, now: dt.datetime) -> int:
    """Console uploads nobody applied within UPLOAD_KEEP (each tick asks); how many went."""
    return session.execute(delete(RosterUpload)
                           .where(RosterUpload.created_at < now - UPLOAD_KEEP)).rowcount
