"""The TOML configuration, parsed strictly once at start-up into frozen, typed objects.

Every error is a ConfigError whose message names the file and the key, so the CLI can print one
line and exit 2 instead of failing later, half-way through a run.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from email_validator import EmailNotValidError, validate_email

from .errors import ConfigError

CONTACT_MAX = 200  # [setting] contact: one line on every staff page and email


@dataclass(frozen=True)
class Setting:
    name: str
    timezone: ZoneInfo
    base_url: str
    contact: str | None = None  # e.g. "Questions? Ask the school office."; None: no line


@dataclass(frozen=True)
class Person:
    name: str
    email: str


@dataclass(frozen=True)
class Database:
    url: str


@dataclass(frozen=True)
class Mail:
    server: str
    port: int
    use_tls: bool
    use_ssl: bool
    username: str
    password_env: str
    sender: str
    admin_email: str | None
    timeout_seconds: float
    # The mail provider's limits (0: none): sends are paced to at most max_per_minute, and at most
    # max_per_day go in any 24 hours (see outbox.py).
    max_per_minute: int = 0
    max_per_day: int = 0

    @property
    def password(self) -> str | None:
        """Read at the moment of use so a rotated secret needs no config change."""
        return os.environ.get(self.password_env) or None


@dataclass(frozen=True)
class Schedule:
    annual_open: tuple[int, int]  # (month, day)
    send_time: dt.time
    reminder_after_days: tuple[int, ...]
    escalate_after_days: int
    digest_every_days: int
    working_days_only: bool
    holidays: str  # "GB-ENG": country[-subdivision]


@dataclass(frozen=True)
class Scheduler:
    interval_seconds: int


@dataclass(frozen=True)
class Web:
    proxy_count: int  # reverse proxies whose X-Forwarded-For / -Proto headers are trusted
    session_idle_hours: int  # an admin session ends after this long without a request


@dataclass(frozen=True)
class Policy:
    """A [[policy]] table: what `signoff init` takes into a database that has no policies yet."""

    slug: str
    title: str
    file: Path | None  # where its text came from, if from a file
    text: str  # the Markdown
    statements: tuple[str, ...]
    reminder_note: str | None  # one more thing the reminder asks, e.g. "check your privacy settings"
    audience: tuple[str, ...] = ()  # roster groups; empty: everyone
    schedule: dict[str, Any] = field(default_factory=dict)  # its own [schedule] keys, as written
    review_every_months: int = 12  # its review is due this long after its latest approval


@dataclass(frozen=True)
class Closure:
    """Days the setting is closed (a holiday, an INSET day): no scheduled email goes on them."""

    name: str
    first: dt.date  # inclusive
    last: dt.date   # inclusive


@dataclass(frozen=True)
class Config:
    path: Path
    setting: Setting
    head_teacher: Person
    database: Database
    mail: Mail
    schedule: Schedule
    scheduler: Scheduler
    web: Web
    policies: tuple[Policy, ...]
    closures: tuple[Closure, ...] = ()


class _Reader:
    """Pulls typed values out of one TOML table, naming `file: [table] key` in every error."""

    def __init__(self, path: Path, table: str, data: dict[str, Any], known: set[str]):
        self.path, self.table, self.data = path, table, data
        unknown = sorted(set(data) - known)
        if unknown:
            self.fail(unknown[0], "is not a known key (known: " + ", ".join(sorted(known)) + ")")

    def fail(self, key: str, why: str) -> None:
        raise ConfigError(f"{self.path}: [{self.table}] {key}: {why}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                self.fail(key, "is required")
            return default
        value = self.data[key]
        # bool is an int in Python; a number key must not accept `true`.
        if isinstance(value, bool) and kind is not bool:
            self.fail(key, f"expected {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            self.fail(key, f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        value = self.get(key, str, default)
        if isinstance(value, str):
            value = value.strip()
            if default is ... and not value:
                self.fail(key, "must not be empty")
        return value

    def email(self, key: str, default: Any = ..., named: bool = True) -> str | None:
        """Exactly one address; "Name <addr>" too unless `named` is false (the name is kept apart)."""
        value = self.text(key, default)
        if not value:
            return None
        import email.utils

        if "\n" in value or "\r" in value:
            self.fail(key, "must be on one line")
        # getaddresses, not parseaddr: parseaddr quietly keeps the first of "a <x@y>, z@y".
        found = email.utils.getaddresses([value])
        addr = found[0][1] if len(found) == 1 else ""
        if not addr or (not named and addr != value):
            example = '"Name <name@example.org>"' if named else '"name@example.org"'
            self.fail(key, f"{value!r} must be exactly one address (e.g. {example})")
        try:
            validate_email(addr, check_deliverability=False)
        except EmailNotValidError as exc:
            self.fail(key, f"{value!r} is not a valid address ({exc})")
        return value

    def whole(self, key: str, low: int, high: int, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}, got {value}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a whole number", bool: "true or false", list: "a list",
             float: "a number", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def default_path() -> Path:
    return Path(os.environ.get("SIGNOFF_CONFIG") or "signoff.toml")


def load(path: Path | str) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (copy config.example.toml to start)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> Config:
    folder = path.parent
    top = _Reader(path, "top level", data, {"setting", "head_teacher", "database", "mail",
                                            "schedule", "scheduler", "web", "policy",
                                            "closure"})

    def table(name: str, known: set[str], required: bool = True) -> _Reader:
        value = top.get(name, dict, {} if not required else ...)
        return _Reader(path, name, value, known)

    s = table("setting", {"name", "timezone", "base_url", "contact"})
    tz_name = s.text("timezone")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        s.fail("timezone", f"{tz_name!r} is not an IANA time zone (e.g. Europe/London)")
    base_url = s.text("base_url").rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        s.fail("base_url", f"{base_url!r} must start with http:// or https://")
    contact = s.text("contact", "")
    if "\n" in contact or "\r" in contact:
        s.fail("contact", "must be on one line")
    if len(contact) > CONTACT_MAX:
        s.fail("contact", f"must be at most {CONTACT_MAX} characters, got {len(contact)}")
    setting = Setting(name=s.text("name"), timezone=tz, base_url=base_url,
                      contact=contact or None)

    h = table("head_teacher", {"name", "email"})
    head = Person(name=h.text("name"), email=h.email("email", named=False))

    d = table("database", {"url"}, required=False)
    url = d.text("url", "sqlite:///instance/signoff.db")
    database = Database(url=_resolve_sqlite(url, folder))

    m = table("mail", {"server", "port", "use_tls", "use_ssl", "username", "password_env",
                       "sender", "admin_email", "timeout_seconds", "max_per_minute",
                       "max_per_day"})
    mail = Mail(
        server=m.text("server"),
        port=m.whole("port", 1, 65535, 25),
        use_tls=m.get("use_tls", bool, False),
        use_ssl=m.get("use_ssl", bool, False),
        username=m.text("username", ""),
        password_env=m.text("password_env", "SIGNOFF_MAIL_PASSWORD"),
        sender=m.email("sender"),
        admin_email=m.email("admin_email", ""),
        timeout_seconds=float(m.whole("timeout_seconds", 1, 600, 30)),
        max_per_minute=m.whole("max_per_minute", 0, 100_000, 0),
        max_per_day=m.whole("max_per_day", 0, 10_000_000, 0),
    )
    if mail.use_tls and mail.use_ssl:
        m.fail("use_ssl", "use_tls (STARTTLS) and use_ssl (implicit TLS) cannot both be true")

    schedule = parse_schedule(top.get("schedule", dict), path, "schedule")

    r = table("scheduler", {"interval_seconds"}, required=False)
    scheduler = Scheduler(interval_seconds=r.whole("interval_seconds", 5, 86400, 300))

    w = table("web", {"proxy_count", "session_idle_hours"}, required=False)
    web = Web(proxy_count=w.whole("proxy_count", 0, 5, 0),
              session_idle_hours=w.whole("session_idle_hours", 1, 168, 8))

    raw_policies = top.get("policy", list)
    if not raw_policies:
        top.fail("policy", "at least one [[policy]] is required")
    policies = []
    seen = set()
    for index, item in enumerate(raw_policies, start=1):
        if not isinstance(item, dict):
            top.fail("policy", "each [[policy]] must be a table")
        policy = _policy(path, f"policy {index}", item, schedule)
        if policy.slug in seen:
            _Reader(path, f"policy {index}", {}, set()).fail(
                "slug", f"{policy.slug!r} is used by an earlier [[policy]]")
        seen.add(policy.slug)
        policies.append(policy)

    closures = tuple(_closure(path, index, item)
                     for index, item in enumerate(top.get("closure", list, []), start=1))
    return Config(path=path, setting=setting, head_teacher=head, database=database, mail=mail,
                  schedule=schedule, scheduler=scheduler, web=web, policies=tuple(policies),
                  closures=closures)


SCHEDULE_KEYS = ("annual_open", "send_time", "reminder_after_days", "escalate_after_days",
                 "digest_every_days", "working_days_only", "holidays")
DEFAULT_SCHEDULE = {"annual_open": "09-01", "send_time": "08:00", "reminder_after_days": [7, 14],
                    "escalate_after_days": 21, "digest_every_days": 7, "working_days_only": True,
                    "holidays": "GB-ENG"}


def parse_schedule(values: dict[str, Any], path: Path | str, table: str,
                   base: Schedule | None = None, stored: bool = False) -> Schedule:
    """A [schedule] table (or a policy's own, its other keys from `base`) as a Schedule. Errors
    name `path: [table] key`. A `stored` one was checked when it was written: its holidays code
    is not checked again."""
    sc = _Reader(Path(path), table, values, set(SCHEDULE_KEYS))
    defaults = schedule_values(base) if base is not None else DEFAULT_SCHEDULE
    annual_open = _month_day(sc, sc.text("annual_open", defaults["annual_open"]))
    send_time = _clock(sc, sc.text("send_time", defaults["send_time"]))
    after = sc.get("reminder_after_days", list, list(defaults["reminder_after_days"]))
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 365 for v in after):
        sc.fail("reminder_after_days", f"expected a list of whole numbers of days (1-365), got {after!r}")
    if list(after) != sorted(set(after)):
        sc.fail("reminder_after_days", f"must be increasing with no repeats, got {after!r}")
    holiday_code = sc.text("holidays", defaults["holidays"])
    if not stored and ("holidays" in values or base is None):
        _check_holidays(sc, holiday_code)
    return Schedule(
        annual_open=annual_open,
        send_time=send_time,
        reminder_after_days=tuple(after),
        escalate_after_days=sc.whole("escalate_after_days", 1, 365,
                                     defaults["escalate_after_days"]),
        digest_every_days=sc.whole("digest_every_days", 1, 365, defaults["digest_every_days"]),
        working_days_only=sc.get("working_days_only", bool, defaults["working_days_only"]),
        holidays=holiday_code,
    )


def schedule_values(schedule: Schedule) -> dict[str, Any]:
    """A Schedule as its [schedule] table's keys and values (as stored, and exported)."""
    month, day = schedule.annual_open
    return {"annual_open": f"{month:02d}-{day:02d}",
            "send_time": schedule.send_time.strftime("%H:%M"),
            "reminder_after_days": list(schedule.reminder_after_days),
            "escalate_after_days": schedule.escalate_after_days,
            "digest_every_days": schedule.digest_every_days,
            "working_days_only": schedule.working_days_only,
            "holidays": schedule.holidays}


POLICY_KEYS = {"slug", "title", "file", "text", "statements", "reminder_note", "audience",
               "schedule", "review_every_months"}
REVIEW_MONTHS = (1, 60)  # review_every_months: at least monthly, at most every five years
AUDIENCE_MAX = 100  # characters in a group's name, as the roster's


def _policy(path: Path, table: str, item: dict[str, Any], base: Schedule,
            known: set[str] = POLICY_KEYS) -> Policy:
    """One [[policy]]: its text from `file` (relative to the config) or given as `text`."""
    p = _Reader(path, table, item, known)
    slug = p.text("slug")
    if not slug.replace("-", "").isalnum() or slug.lower() != slug or not slug.isascii():
        p.fail("slug", f"{slug!r} must be lower-case letters, digits and hyphens")
    if ("file" in item) == ("text" in item):
        p.fail("file", "give the policy's text as file = \"…\" or as text = \"\"\"…\"\"\" (one of them)")
    file = None
    if "file" in item:
        file = (path.parent / p.text("file")).resolve()
        if not file.is_file():
            p.fail("file", f"{file} does not exist")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            p.fail("file", f"{file} cannot be read as UTF-8 text ({exc})")
    else:
        text = p.get("text", str)  # as written: its hash is the version's
        if not text.strip():
            p.fail("text", "must not be empty")
    statements = p.get("statements", list)
    if not statements or any(not isinstance(x, str) or not x.strip() for x in statements):
        p.fail("statements", "expected a non-empty list of statements (text)")
    audience = p.get("audience", list, [])
    if any(not isinstance(g, str) or not g.strip() or len(g.strip()) > AUDIENCE_MAX
           for g in audience):
        p.fail("audience", f"expected a list of roster group names, got {audience!r}")
    overrides = p.get("schedule", dict, {})
    parse_schedule(overrides, path, f"{table} schedule", base)  # checked; stored as written
    months = p.get("review_every_months", int, 12)
    if not REVIEW_MONTHS[0] <= months <= REVIEW_MONTHS[1]:
        p.fail("review_every_months", f"expected a number of months from {REVIEW_MONTHS[0]} to "
                                      f"{REVIEW_MONTHS[1]}, got {months}")
    return Policy(slug=slug, title=p.text("title"), file=file, text=text,
                  statements=tuple(x.strip() for x in statements),
                  reminder_note=p.text("reminder_note", "") or None,
                  audience=tuple(dict.fromkeys(g.strip() for g in audience)),
                  schedule=dict(overrides), review_every_months=months)


# `signoff policy import`: a [[policy]] may also say what kind of change a new text is, and why.
IMPORT_POLICY_KEYS = POLICY_KEYS | {"change", "note"}


@dataclass(frozen=True)
class Imported:
    """A policy library file (`signoff policy import`): what it gives, and what it leaves out
    (None)."""

    schedule: dict[str, Any] | None  # [schedule], as stored
    policies: tuple[tuple[Policy, str, str | None], ...]  # each with its change and note
    closures: tuple[Closure, ...] | None


def parse_library(data: dict[str, Any], path: Path, stored: Schedule) -> Imported:
    """The tables of a library file: [schedule], [[policy]] (with `text` or `file`, and optionally
    `change = "material" | "minor"` and a `note`) and [[closure]]; each error names the file and
    the key. A policy's own schedule keys are checked over the file's [schedule], or the stored
    one if the file has none."""
    top = _Reader(path, "top level", data, {"schedule", "policy", "closure"})
    schedule, base = None, stored
    if "schedule" in data:
        base = parse_schedule(top.get("schedule", dict), path, "schedule")
        schedule = schedule_values(base)
    policies, seen = [], set()
    for index, item in enumerate(top.get("policy", list, []), start=1):
        if not isinstance(item, dict):
            top.fail("policy", "each [[policy]] must be a table")
        table = f"policy {index}"
        policy = _policy(path, table, item, base, IMPORT_POLICY_KEYS)
        reader = _Reader(path, table, item, IMPORT_POLICY_KEYS)
        if policy.slug in seen:
            reader.fail("slug", f"{policy.slug!r} is used by an earlier [[policy]]")
        seen.add(policy.slug)
        change = reader.text("change", "material")
        if change not in ("material", "minor"):
            reader.fail("change", f"expected \"material\" or \"minor\", got {change!r}")
        policies.append((policy, change, reader.text("note", "") or None))
    closures = None
    if "closure" in data:
        closures = tuple(_closure(path, index, item)
                         for index, item in enumerate(top.get("closure", list), start=1))
    return Imported(schedule, tuple(policies), closures)


def _closure(path: Path, index: int, item: Any) -> Closure:
    if not isinstance(item, dict):
        _Reader(path, "top level", {}, set()).fail("closure", "each [[closure]] must be a table")
    c = _Reader(path, f"closure {index}", item, {"name", "from", "to"})

    def day(key: str) -> dt.date:
        value = c.get(key, (str, dt.date))
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            c.fail(key, f"{value!r} is not a date as YYYY-MM-DD")

    first, last = day("from"), day("to")
    if last < first:
        c.fail("to", f"{last} is before from ({first})")
    name = c.text("name")
    if len(name) > 100:
        c.fail("name", "must be at most 100 characters")
    return Closure(name=name, first=first, last=last)


def _resolve_sqlite(url: str, folder: Path) -> str:
    """Relative SQLite paths resolve against the config file's folder, like every other path."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str((folder / url[len(prefix):]).resolve())
    return url


def _month_day(reader: _Reader, value: str) -> tuple[int, int]:
    try:
        month, day = (int(x) for x in value.split("-"))
        # 2024 is a leap year, so 02-29 is accepted; planner moves it to 28 Feb in other years.
        dt.date(2024, month, day)
        if len(value) != 5:
            raise ValueError
    except ValueError:
        reader.fail("annual_open", f"{value!r} is not a valid MM-DD date (e.g. \"09-01\")")
    return month, day


def _clock(reader: _Reader, value: str) -> dt.time:
    try:
        hour, minute = (int(x) for x in value.split(":"))
        return dt.time(hour, minute)
    except ValueError:
        reader.fail("send_time", f"{value!r} is not a valid HH:MM time (e.g. \"08:00\")")


def _check_holidays(reader: _Reader, code: str) -> None:
    country, _, subdiv = code.partition("-")
    try:
        # No years: the code is checked without working out any year's holidays.
        holidays_lib.country_holidays(country, subdiv=subdiv or None)
    except NotImplementedError:
        reader.fail("holidays", f"{country!r} is not a country the holidays package knows")
    except Exception as exc:  # the package raises several types for a bad subdivision
        reader.fail("holidays", f"{code!r}: {exc}")
