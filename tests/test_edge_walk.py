"""Hostile input gets a 4xx, never a 500: a walk over every route of the app.

The walk takes the routes from `app.url_map` itself, so a new page is walked without anyone adding
it here. For every rule and each method it allows, it asks for URLs whose path arguments are out of
range or malformed ids (0, 2**31, 2**63, 10**30 …), NUL bytes, CR/LF and over-long text, and adds
every query parameter the app reads (found in workflow/ by `request.args`) with such values, signed
in and signed out. Then it submits every form the pages show (the console's, the confirmation
page's) with a hostile value in each field in turn, and in all of them at once, with a valid CSRF
token so the handler itself runs; the roster upload gets CSV files with over-long names and roles,
NUL bytes and bad encodings, and what each upload stored is applied. The sign-in form gets hostile
addresses, passwords and `next` targets.

Each test passes when no answer was a 5xx, no page showed a traceback and nothing was logged at
ERROR or with an exception. Every failure of a walk is collected and reported together, one line
each (method, URL, field, value, what went wrong). Both databases, through `db_url`.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import quote, urlencode, urljoin, urlsplit

import pytest
from sqlalchemy import select
from werkzeug.routing.converters import NumberConverter

from admin_helpers import ADMIN, PASSWORD, admin, app, clock, console, csrf, sign_in  # noqa: F401
from conftest import ROOT, link_in
from workflow.models import Cycle, Staff

# --- the hostile values ----------------------------------------------------------------------

BAD_IDS = [0, -1, 2**31 - 1, 2**31, 2**63, 10**30, "1.5", "0x10", " 1", "\x00"]
BAD_TEXT = ["\x00", "a\r\nb", "x" * 5000, "..", "%", "social-media\x00", "A" * 43]
BAD_QUERY = ["\x00", "a\r\nb", "x" * 10000, "-1", "99999999999999999999",
             "/admin/\r\nSet-Cookie: x=1", "//evil.example/admin/"]
BAD_FIELD = ["\x00", "a\r\nb", "x" * 10000, "9" * 30, "-1", "", "9999-12-31", "0001-01-01",
             "/admin/\r\nSet-Cookie: x=1"]

# Good values for a field the page leaves empty, by its name (after any "social-media-exempt-").
GOOD = {"password": PASSWORD, "name": "Dana Walker", "role": "Cook", "reason": "On leave",
        "due": "2026-12-01", "start_date": "2026-10-01", "signed_on": "2026-09-01", "q": "amira", "next": "/admin/people"}

ROSTER = b"name,email,role\nDana Walker,dana.walker@example.org,Cook\n"
# What the roster upload is sent: (what it is, file name, contents).
BAD_FILES = [
    ("a 300-character name and 150-character role", "staff.csv",
     b"name,email,role\n" + b"N" * 300 + b",long@example.org," + b"R" * 150 + b"\n"),
    ("a 201-character name and 101-character role", "staff.csv",
     b"name,email,role\n" + b"N" * 201 + b",edge@example.org," + b"R" * 101 + b"\n"),
    ("a NUL byte in a name", "staff.csv", b"name,email\nNul\x00Person,nul@example.org\n"),
    ("a NUL byte in the header", "staff.csv", b"na\x00me,email\nX,x@example.org\n"),
    ("bytes that are not UTF-8", "staff.csv", b"name,email\n\xff\xfe,bad@example.org\n"),
    ("an empty file", "staff.csv", b""),
    ("a start date and active flag out of range", "staff.csv",
     b"name,email,start_date,active\nEve,eve@example.org,99999999999999999999,-1\n"),
    ("a far-future start date", "staff.csv",
     b"name,email,start_date\nFay,fay@example.org,9999-12-31\n"),
    ("an over-long address", "staff.csv", b"name,email\nGus," + b"g" * 400 + b"@example.org\n"),
    ("CR/LF in the file name", "a\r\nb.csv", ROSTER),
    ("a 5000-character file name", "x" * 5000 + ".csv", ROSTER),
    ("a NUL byte in the file name", "a\x00b.csv", ROSTER),
]

pytestmark = pytest.mark.slow  # thousands of requests: about 15 s a database

EXTRA_STAFF = 8  # people for the person-page forms to act on, one each (see pick_forms)


# --- reporting -------------------------------------------------------------------------------

def shown(value, limit: int = 60) -> str:
    """A value or URL as one short readable line: over-long ones cut, with their length."""
    text = repr(value) if not isinstance(value, str) or not value.startswith("/") else value
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\x00", "\\x00")
    if len(text) <= limit:
        return text
    return f"{text[:limit - 20]}…[{len(str(value))} chars]"


class Walk:
    """One client walking the app; every answer checked, every problem kept for the report."""

    def __init__(self, client, caplog, signed_in: bool):
        self.client, self.caplog, self.signed_in = client, caplog, signed_in
        self.failures: list[str] = []
        self.requests = 0
        self.seen_records = len(caplog.records)
        self.token = csrf(client)

    def request(self, method: str, url: str, what: str = "", **kw):
        response = self.client.open(url, method=method, **kw)
        self.requests += 1
        self.check(response, method, url, what)
        if self.signed_in and not self._still_signed_in():  # the walk posted "Sign out"
            assert sign_in(self.client).status_code == 303
            self.token = csrf(self.client)
        return response

    def check(self, response, method: str, url: str, what: str) -> None:
        problems = []
        if response.status_code >= 500:
            problems.append(f"status {response.status_code}")
        if b"Traceback" in response.get_data():
            problems.append("the page shows a Traceback")
        new = self.caplog.records[self.seen_records:]
        self.seen_records = len(self.caplog.records)
        for record in new:
            if record.levelno >= logging.ERROR or record.exc_info:
                line = f"log {record.levelname} {record.name}: {record.getMessage()}"
                if record.exc_info and record.exc_info[1] is not None:
                    line += f" [{shown(record.exc_info[1], 160)}]"
                problems.append(line)
        if problems:
            where = f"{method} {shown(url, 110)}" + (f" {what}" if what else "")
            self.failures.append(f"{where}: {'; '.join(problems)}")

    def _still_signed_in(self) -> bool:
        with self.client.session_transaction() as session:
            return "_user_id" in session

    def assert_clean(self) -> None:
        assert not self.failures, (f"{len(self.failures)} of {self.requests} requests went wrong:\n"
                                   + "\n".join(self.failures))


# --- routes ----------------------------------------------------------------------------------

ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def query_names() -> list[str]:
    """Every query parameter the app reads: each request.args.get("…") or ["…"] in workflow/."""
    names = set()
    for path in (ROOT / "workflow").rglob("*.py"):
        names.update(re.findall(r"request\.args(?:\.get\(|\[)\s*[\"'](\w+)[\"']",
                                path.read_text()))
    assert "next" in names, names  # the sign-in page's, at least
    return sorted(names)


def real_values(app, smtp) -> dict[str, list]:
    """Real values for each path argument the routes have; the first is used by default."""
    import datetime as dt

    from workflow.models import Closure, Policy

    with app.extensions["signoff"].db.write() as session:
        staff = list(session.scalars(select(Staff.id).order_by(Staff.id)))
        cycles = list(session.scalars(select(Cycle.id).order_by(Cycle.id)))
        policies = list(session.scalars(select(Policy.id).order_by(Policy.id)))
        closure = Closure(setting_id=1, name="Half term", first=dt.date(2026, 10, 26),
                          last=dt.date(2026, 10, 30), created_at=dt.datetime.now(dt.timezone.utc))
        session.add(closure)
        session.flush()
        closures = [closure.id]
    token = urlsplit(link_in(smtp.inbox.to("amira@example.org")[0])).path.rsplit("/", 1)[1]
    return {"staff_id": staff, "cycle_id": cycles, "slug": ["social-media"], "token": [token],
            "policy_id": policies, "closure_id": closures}


def build(rule, values: dict) -> str:
    """The rule's URL with each argument replaced by a value, quoted as a browser would."""
    return ARGUMENT.sub(lambda m: quote(str(values[m.group(2)]), safe=""), rule.rule)


def route_urls(app, real: dict[str, list]):
    """(method, URL, what was made hostile) for every rule: with real values, with each argument
    hostile in turn (the others real), and with each query parameter hostile."""
    names = query_names()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        arguments = {m.group(2): m.group(1) or "default" for m in ARGUMENT.finditer(rule.rule)}
        missing = [a for a in arguments if a not in real]
        assert not missing, f"{rule.rule}: give the walk a real value for {missing} in real_values"
        good = {a: real[a][0] for a in arguments}
        urls = [(build(rule, good), "")]
        for argument, converter in arguments.items():
            numeric = issubclass(app.url_map.converters[converter], NumberConverter)
            for value in BAD_IDS if numeric else BAD_TEXT:
                urls.append((build(rule, {**good, argument: value}), f"{argument}={shown(value)}"))
        base = urls[0][0]
        for name in names:
            for value in BAD_QUERY:
                urls.append((f"{base}?{urlencode({name: value})}", f"?{name}={shown(value)}"))
        for method in sorted(rule.methods - {"OPTIONS"}):
            for url, what in urls:
                yield method, url, what


def walk_routes(walk: Walk, app, real) -> None:
    for method, url, what in route_urls(app, real):
        # A POST carries the session's CSRF token, so the handler runs rather than Flask-WTF's check.
        data = {"csrf_token": walk.token} if method == "POST" else None
        walk.request(method, url, what, data=data)


@pytest.fixture
def watched(admin, caplog):
    """The signed-in admin's client (after the first tick), with the log watched from WARNING."""
    caplog.set_level(logging.WARNING)
    return admin


def test_every_url_answers_hostile_ids_and_queries_without_a_server_error_signed_in(
        watched, app, smtp, caplog):
    walk = Walk(watched, caplog, signed_in=True)
    walk_routes(walk, app, real_values(app, smtp))
    walk.assert_clean()


def test_every_url_answers_hostile_ids_and_queries_without_a_server_error_signed_out(
        watched, app, smtp, caplog):
    walk = Walk(app.test_client(), caplog, signed_in=False)
    walk_routes(walk, app, real_values(app, smtp))
    walk.assert_clean()


# --- forms -----------------------------------------------------------------------------------

@dataclass
class Field:
    name: str
    kind: str  # the input's type, or "select" / "textarea"
    value: str = ""

    @property
    def is_csrf(self) -> bool:
        return self.name.endswith("csrf_token")

    @property
    def hidden(self) -> bool:
        return self.kind == "hidden"


@dataclass
class Form:
    method: str
    action: str
    fields: list[Field] = field(default_factory=list)


class FormParser(HTMLParser):
    """Every <form> of a page: method, action and the named inputs, selects and textareas."""

    def __init__(self, page: str):
        super().__init__()
        self.page, self.forms = page, []
        self.form: Form | None = None
        self.select: Field | None = None
        self.textarea: Field | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.form = Form((a.get("method") or "get").upper(),
                             urljoin(self.page, a.get("action") or self.page))
            self.forms.append(self.form)
        elif tag == "option" and self.select is not None:  # the selected one, else the first
            if not self.select.value or "selected" in a:
                self.select.value = a.get("value", "")
        elif self.form is None or not a.get("name"):
            return
        elif tag == "input" and a.get("type", "text").lower() not in ("submit", "button", "reset"):
            self.form.fields.append(Field(a["name"], a.get("type", "text").lower(),
                                          a.get("value", "")))
        elif tag == "select":
            self.select = Field(a["name"], "select")
            self.form.fields.append(self.select)
        elif tag == "textarea":
            self.textarea = Field(a["name"], "textarea")
            self.form.fields.append(self.textarea)

    def handle_endtag(self, tag):
        if tag == "form":
            self.form = None
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data):
        if self.textarea is not None:
            self.textarea.value += data


def forms_of(response, page: str) -> list[Form]:
    if not response.content_type.startswith("text/html"):
        return []
    parser = FormParser(page)
    parser.feed(response.get_data(as_text=True))
    return parser.forms


def endpoint(app, form: Form) -> tuple[str, dict]:
    adapter = app.url_map.bind("signoff.test")
    return adapter.match(urlsplit(form.action).path, method=form.method)


def key(app, form: Form) -> tuple:
    return (endpoint(app, form)[0], form.method, tuple(sorted(f.name for f in form.fields)))


def pick_forms(app, found: list[Form]) -> list[Form]:
    """One of each form (by where it posts and its fields). A form acting on a person gets a
    person no other form acts on, so one form's effect (deactivating, exempting someone) does not
    leave the next with nobody it can act on, and each handler runs in full."""
    picked: dict[tuple, Form] = {}
    used = set()  # the people a picked form acts on
    for form in found:
        person = endpoint(app, form)[1].get("staff_id")
        if key(app, form) in picked or (person is not None and person in used):
            continue
        picked[key(app, form)] = form
        if person is not None:
            used.add(person)
    return list(picked.values())


def good_value(field: Field, form: Form, count: int):
    """What a careful user would enter: the page's own value, else a sensible one."""
    if field.kind == "file":
        return (io.BytesIO(ROSTER), "staff.csv")
    if field.kind in ("checkbox", "radio"):
        return field.value or "y"
    if field.value:
        return field.value
    base = field.name.rsplit("-", 1)[-1]
    if base == "email":  # the sign-in form's is the admin's; a new person needs a new address
        return ADMIN if any(f.kind == "password" for f in form.fields) else \
            f"walker{count}@example.org"
    return GOOD.get(base, "walk")


class FormWalk(Walk):
    """A walk that fills in forms: the hostile values given, good ones elsewhere, and always the
    session's CSRF token."""

    count = 0  # submissions so far, for a new address each time

    def submit(self, form: Form, hostile: dict[str, object], what: str):
        self.count += 1
        data = {}
        for f in form.fields:
            if f.is_csrf:
                data[f.name] = self.token
            elif f.name in hostile:
                data[f.name] = hostile[f.name]
            else:
                data[f.name] = good_value(f, form, self.count)
        if form.method == "GET":
            url = f"{urlsplit(form.action).path}?{urlencode(data)}"
            return self.request("GET", url, what)
        return self.request("POST", form.action, what, data=data)


def walk_form(walk: FormWalk, form: Form, follow) -> None:
    """Each field hostile in turn (hidden ones too, not the CSRF token), then every visible one at
    once, then the form as a careful user fills it in. What each answer offers next, `follow`
    takes up."""
    fields = [f for f in form.fields if not f.is_csrf]
    visible = [f for f in fields if not f.hidden]
    tries: list[tuple[dict, str]] = []
    for f in fields:
        if f.kind == "file":
            tries += [({f.name: (io.BytesIO(content), name)}, f"{f.name}= {what}")
                      for what, name, content in BAD_FILES]
        tries += [({f.name: value}, f"{f.name}={shown(value)}") for value in BAD_FIELD]
    if len(visible) > 1:
        tries += [({f.name: value for f in visible}, f"every field={shown(value)}")
                  for value in BAD_FIELD]
    tries.append(({}, "as a user fills it in"))
    for hostile, what in tries:
        follow(walk.submit(form, hostile, what), what)


def test_every_form_answers_hostile_input_without_a_server_error(watched, app, smtp, cli,
                                                                    console, caplog):
    people = console.parent / "more-staff.csv"
    people.write_text("name,email\n" + "".join(f"Extra {n},extra{n}@example.org\n"
                                               for n in range(EXTRA_STAFF)))
    assert cli("staff", "import", str(people), config=console).exit_code == 0
    walk = FormWalk(watched, caplog, signed_in=True)
    real = real_values(app, smtp)

    # Every page a signed-in admin can GET (each person's, for their forms), and what it offers.
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or "GET" not in rule.methods:
            continue
        arguments = [m.group(2) for m in ARGUMENT.finditer(rule.rule)]
        people_ids = real["staff_id"] if "staff_id" in arguments else [None]
        for person in people_ids:
            url = build(rule, {a: real[a][0] for a in arguments} | {"staff_id": person})
            found += forms_of(walk.request("GET", url), url)
    forms = pick_forms(app, found)
    known = {key(app, f) for f in forms}
    assert {k[0] for k in known} >= {"admin.upload", "admin.extend", "confirm.page"}, known

    on_pages = set(known)  # the forms the pages show, Sign out among them

    def follow(response, what: str) -> None:
        """A form only a POST reveals (the roster preview's Apply) joins the walk, and is submitted
        as shown each time it appears, so what every upload stored is applied too."""
        for form in forms_of(response, response.request.path):
            if key(app, form) in on_pages:
                continue
            if key(app, form) not in known:
                known.add(key(app, form))
                forms.append(form)
            walk.submit(form, {}, f"as shown after {what}")

    index = 0
    while index < len(forms):  # forms grows as POSTs reveal new ones
        walk_form(walk, forms[index], follow)
        index += 1
    assert any(endpoint(app, f)[0] == "admin.apply_upload" for f in forms), \
        "the roster preview's Apply form was never reached"
    walk.assert_clean()


def test_sign_in_answers_hostile_addresses_passwords_and_next_without_a_server_error(
        watched, app, clock, caplog):
    walk = FormWalk(app.test_client(), caplog, signed_in=False)
    for value in BAD_QUERY:  # the page carries ?next= into its form
        walk.request("GET", f"/admin/login?{urlencode({'next': value})}", f"?next={shown(value)}")
    [form] = forms_of(walk.request("GET", "/admin/login"), "/admin/login")
    assert {f.name for f in form.fields} == {"csrf_token", "next", "email", "password"}

    def submit(hostile: dict, what: str) -> None:
        # A new browser each time: once a sign-in works, the next would find the admin signed in.
        walk.client = app.test_client()
        walk.token = csrf(walk.client)
        walk.submit(form, hostile, what)

    # `next` first, with the right address and password, so each reaches the redirect after
    # signing in; between the groups the rate limit's window passes, so every attempt is checked.
    for name in ("next", "email", "password"):
        for value in BAD_FIELD:
            submit({name: value}, f"{name}={shown(value)}")
        clock.shift(dt.timedelta(minutes=16))
    for value in BAD_FIELD:
        submit({"email": value, "password": value}, f"email=password={shown(value)}")
    submit({}, "the right address and password")
    walk.assert_clean()
