"""The staff roster, as schools export it: a CSV validated whole, then upserted by address in one
transaction.

Exports from a school MIS or an HR spreadsheet name their columns their own way ("Forename",
"Surname", "Work Email", "Job Title"), add columns we do not need, and come from Excel with a
byte-order mark, semicolons and DD/MM/YYYY dates: `parse` takes them all, names what it used and
what it ignored, and reports every bad line by number. All-or-nothing: nothing is stored unless
every line is good. `plan` works out what an import would change, read-only (`--dry-run`, the
console's preview); `apply` makes those changes. Nobody is deleted: `active=no`, or a `full`
import that leaves someone out, makes a person inactive.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import events
from .errors import RosterError
from .models import RosterUpload, Staff

NAME_MAX, ROLE_MAX = 200, 100  # the columns' sizes; the console's forms ask the same
FIRST_NAME_MAX, GROUP_MAX = 100, 50
UPLOAD_KEEP = dt.timedelta(days=1)  # a console upload not applied by then is removed by the tick

# What each field's column may be headed, compared folded (see `fold`): the contract's list.
HEADINGS = {
    "name": ("name", "fullname"),
    "first_name": ("firstname", "forename", "givenname"),
    "last_name": ("lastname", "surname", "familyname"),
    "known_as": ("knownas", "preferredname", "preferredfirstname"),
    "email": ("email", "emailaddress", "workemail", "workemailaddress"),
    "role": ("role", "jobtitle", "position"),
    "start_date": ("startdate", "employmentstart", "employmentstartdate"),
    "active": ("active",),
    "groups": ("groups",),
}
LABELS = {"name": "name", "first_name": "first name", "last_name": "last name",
          "known_as": "known as", "email": "email", "role": "role", "start_date": "start date",
          "active": "active", "groups": "groups"}
_YES = {"yes": True, "true": True, "y": True, "1": True,
        "no": False, "false": False, "n": False, "0": False}
_UK_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


class MissingColumns(RosterError):
    """The headings do not say which column is the name or the address: `headings` are what the
    file has, for someone to choose from (the console's column form)."""

    def __init__(self, problems: list[str], headings: list[str]):
        super().__init__(problems)
        self.headings = headings


@dataclass(frozen=True)
class Row:
    line: int
    name: str
    email: str
    role: str | None = None  # None: the file has no such column, keep what is stored
    start_date: dt.date | None = None
    active: bool | None = None
    first_name: str | None = None  # None: keep what is stored (a new person: the name's first word)
    groups: tuple[str, ...] | None = None


@dataclass
class Parsed:
    rows: list[Row]
    used: dict[str, str]  # field -> the heading it was read from
    ignored: list[str]    # headings not read

    def columns_line(self, source: str) -> str:
        used = ", ".join(f"{LABELS[f]} from {h!r}" for f, h in self.used.items())
        ignored = f"; ignored: {', '.join(repr(h) for h in self.ignored)}" if self.ignored else ""
        return f"{source}: columns: {used}{ignored}"


def fold(heading: str) -> str:
    """A heading as compared: lower case, without spaces, underscores, hyphens and dots."""
    return re.sub(r"[\s_.\-]+", "", clean_text(heading).lower())


def clean_text(value: str) -> str:
    """Names come from spreadsheets: drop control characters (no header injection), fold spaces."""
    kept = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in value)
    return " ".join(kept.split())


def first_word(name: str) -> str:
    return (name.split() or [""])[0][:FIRST_NAME_MAX]


def recognise(headings: list[str]) -> dict[str, int]:
    """Each field's column by its heading; the first of two that mean the same wins."""
    found: dict[str, int] = {}
    for index, heading in enumerate(headings):
        folded = fold(heading)
        for name, spellings in HEADINGS.items():
            if folded in spellings and name not in found:
                found[name] = index
    return found


def parse(data: bytes, source: str, columns: dict[str, int] | None = None) -> Parsed:
    """Every row, validated; RosterError lists every problem as `source: line N: …`. `columns`
    (field -> column index) says which column is which where the headings do not."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RosterError([f"{source}: not UTF-8 text (byte {exc.start}); save the CSV as "
                           "UTF-8 (in Excel: CSV UTF-8)"]) from None
    if "\x00" in text:
        raise RosterError([f"{source}: contains NUL bytes: not a CSV file"])
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    headings = [clean_text(h) for h in next(reader, [])]
    if not any(headings):
        raise RosterError([f"{source}: no staff rows found"])
    if columns is None:
        where = recognise(headings)
    else:  # chosen in the console: only fields we know, only columns the file has
        where = {f: i for f, i in columns.items() if f in HEADINGS and 0 <= i < len(headings)}
    missing = []
    if "email" not in where:
        missing.append("email")
    if not {"name", "first_name", "last_name"} & where.keys():
        missing.append("name (or first name and last name)")
    if missing:
        found = ", ".join(repr(h) for h in headings if h) or "none"
        raise MissingColumns([f"{source}: line 1: no column for {' or '.join(missing)}; the "
                              f"columns are {found}"], headings)
    used = {f: headings[i] for f, i in where.items()}
    taken = set(where.values())
    ignored = [h for i, h in enumerate(headings) if i not in taken and h]

    rows: list[Row] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if not any(v.strip() for v in record):
            continue  # blank lines at the end of a spreadsheet export
        if len(record) > len(headings) and any(v.strip() for v in record[len(headings):]):
            problems.append(f"{source}: line {line}: more fields than columns")
            continue
        values = {f: (record[i] if i < len(record) else "") for f, i in where.items()}
        row, errors = _row(line, values, used)
        if row is not None and row.email in first_line:
            errors.append(f"{row.email} is already on line {first_line[row.email]}")
        if errors:
            problems.append(f"{source}: line {line}: " + "; ".join(errors))
            continue
        first_line[row.email] = line
        rows.append(row)
    if problems:
        raise RosterError(problems)
    if not rows:
        raise RosterError([f"{source}: no staff rows found"])
    return Parsed(rows, used, ignored)


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """Comma, semicolon (Excel in much of Europe) or tab, as the file's first lines use them."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _row(line: int, values: dict[str, str], headed: dict[str, str]) -> tuple[Row | None, list[str]]:
    """One line's person, or what is wrong with it; a column is named by the file's heading."""
    errors = []
    name = clean_text(values.get("name", ""))
    if not name:
        name = clean_text(f"{values.get('first_name', '')} {values.get('last_name', '')}")
    if not name:
        errors.append("name is empty")
    elif len(name) > NAME_MAX:
        errors.append(f"name is longer than {NAME_MAX} characters")
    # Known as, else the first-name column, else the name's first word; a file with neither
    # column leaves what the console holds (a new person: the name's first word).
    first = clean_text(values.get("known_as", "")) or clean_text(values.get("first_name", ""))
    if not first and {"known_as", "first_name"} & values.keys():
        first = first_word(name)
    if first and len(first) > FIRST_NAME_MAX:
        errors.append(f"first name is longer than {FIRST_NAME_MAX} characters")
    email = values["email"].strip()
    try:
        email = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        errors.append(f"email {email[:80]!r} is not valid ({exc})")
    role = clean_text(values["role"]) if "role" in values else None
    if role and len(role) > ROLE_MAX:
        errors.append(f"role is longer than {ROLE_MAX} characters")
    start_date = None
    if values.get("start_date", "").strip():
        start_date = _date(values["start_date"].strip())
        if start_date is None:
            errors.append(f"{headed['start_date']} {values['start_date'].strip()[:40]!r} is not "
                          "a date as YYYY-MM-DD or DD/MM/YYYY")
    active = None
    if values.get("active", "").strip():
        active = _YES.get(values["active"].strip().lower())
        if active is None:
            errors.append(f"{headed['active']} {values['active'].strip()[:40]!r} is not "
                          "yes/no/true/false")
    groups = None
    if "groups" in values:
        groups = groups_of(values["groups"])
        if any(len(g) > GROUP_MAX for g in groups):
            errors.append(f"a group name is longer than {GROUP_MAX} characters")
    if errors:
        return None, errors
    return Row(line, name, email, role, start_date, active, first or None, groups), errors


def _date(text: str) -> dt.date | None:
    uk = _UK_DATE.fullmatch(text)
    try:
        if uk:
            day, month, year = map(int, uk.groups())
            return dt.date(year, month, day)
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def groups_of(text: str) -> tuple[str, ...]:
    """`teaching; first aid` -> ("teaching", "first aid"): each once, whatever its case."""
    seen: dict[str, str] = {}
    for part in text.split(";"):
        group = clean_text(part)
        if group and group.lower() not in seen:
            seen[group.lower()] = group
    return tuple(seen.values())


# --- what an import changes --------------------------------------------------------------------

@dataclass(frozen=True)
class Leaver:
    """Someone on the roster but not in a full staff list."""

    name: str
    email: str


@dataclass
class Plan:
    """What an import does: worked out before anything is written, then carried out by `apply`."""

    added: list[Row] = field(default_factory=list)
    updated: list[tuple[Row, dict[str, tuple]]] = field(default_factory=list)
    deactivated: list[Row] = field(default_factory=list)  # `active` says no
    missing: list[Leaver] = field(default_factory=list)   # a full list leaves them out
    unchanged: int = 0
    # The people it read, by address: `apply` changes these, without reading them again.
    stored: dict[str, Staff] = field(default_factory=dict, repr=False)

    @property
    def changes(self) -> int:
        return len(self.added) + len(self.updated) + len(self.deactivated) + len(self.missing)

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, "
                f"{len(self.deactivated) + len(self.missing)} made inactive, "
                f"{self.unchanged} unchanged")

    def inactive_lines(self) -> list[str]:
        """Who stops getting reminders, a line each: the command always says."""
        out = [f"  made inactive (not in the full list): {p.name} <{p.email}>" for p in self.missing]
        return out + [f"  made inactive (line {r.line}): {r.name} <{r.email}>"
                      for r in self.deactivated]

    def lines(self) -> list[str]:
        """Each change on a line of its own (the command's --dry-run)."""
        out = self.inactive_lines()
        out += [f"  added (line {r.line}): {r.name} <{r.email}>" for r in self.added]
        for row, changes in self.updated:
            said = "; ".join(f"{LABELS.get(a, a)} {shown(b)} → {shown(c)}"
                             for a, (b, c) in changes.items())
            out.append(f"  updated (line {row.line}): {row.email}: {said}")
        return out


def shown(value) -> str:
    """A value in a list of changes: "—" for nothing, groups joined."""
    if value is None or value == "":
        return "—"
    if isinstance(value, (list, tuple)):
        return "; ".join(value) or "—"
    return str(value)


_COMPARED = ("name", "first_name", "role", "start_date", "active", "groups")


def plan(session: Session, setting_id: int | None, rows: list[Row], full: bool = False) -> Plan:
    """What importing `rows` would change, read-only. `full`: the rows are the whole staff list,
    so every active person not in them is made inactive."""
    result = Plan()
    result.stored = {s.email: s for s in session.scalars(
        select(Staff).where(Staff.setting_id == setting_id,
                            Staff.email.in_([r.email for r in rows])))}
    for row in rows:
        person = result.stored.get(row.email)
        if person is None:
            result.added.append(row)
            continue
        changes = {}
        for attr in _COMPARED:
            value = getattr(row, attr)
            before = getattr(person, attr)
            if attr == "groups":
                before = tuple(before or ())
            if value is not None and before != value:
                changes[attr] = (before, value)
        if not changes:
            result.unchanged += 1
        elif set(changes) == {"active"} and row.active is False:
            result.deactivated.append(row)
        else:
            result.updated.append((row, changes))
    if full:
        listed = {r.email for r in rows}
        for s in session.scalars(select(Staff).where(Staff.setting_id == setting_id, Staff.active)
                                 .order_by(Staff.name, Staff.email)):
            if s.email not in listed:
                result.missing.append(Leaver(s.name, s.email))
                result.stored[s.email] = s
    return result


def apply(session: Session, setting_id: int, rows: list[Row], now: dt.datetime,
          actor: str = "system", full: bool = False) -> Plan:
    """Make the changes `plan` finds, each an event in the log, in the caller's transaction."""
    result = plan(session, setting_id, rows, full)
    for row in result.added:
        person = Staff(setting_id=setting_id, email=row.email, name=row.name,
                       first_name=row.first_name or first_word(row.name), role=row.role or "",
                       start_date=row.start_date, groups=list(row.groups or ()),
                       active=True if row.active is None else row.active,
                       created_at=now, updated_at=now)
        session.add(person)
        session.flush()
        events.record(session, "staff_added", now, actor=actor, staff_id=person.id,
                      name=row.name, active=person.active)
    for row, changes in result.updated:
        _update(session, result.stored[row.email], changes, now, actor)
    for row in result.deactivated:
        _update(session, result.stored[row.email], {"active": (True, False)}, now, actor)
    for leaver in result.missing:
        _update(session, result.stored[leaver.email], {"active": (True, False)}, now, actor,
                why="not in the full staff list")
    return result


def _update(session: Session, person: Staff, changes: dict[str, tuple], now: dt.datetime,
            actor: str, why: str | None = None) -> None:
    for attr, (_, value) in changes.items():
        setattr(person, attr, list(value) if attr == "groups" else value)
    person.updated_at = now
    said = {a: [logged(b), logged(c)] for a, (b, c) in changes.items()}
    detail = {"changes": said, **({"why": why} if why else {})}
    events.record(session, "staff_updated", now, actor=actor, staff_id=person.id, **detail)


def logged(value):
    """A value as the event log keeps it: text, a list, or None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return list(value)
    return str(value)


def forget_uploads(session: Session, now: dt.datetime) -> int:
    """Console uploads nobody applied within UPLOAD_KEEP (each tick asks); how many went."""
    return session.execute(delete(RosterUpload)
                           .where(RosterUpload.created_at < now - UPLOAD_KEEP)).rowcount
