"""Config: the shipped example is valid, and every mistake stops the CLI with exit 2 and one line
naming the file and the key, never a traceback. The SMTP password only ever comes from the env var."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from conftest import ROOT, _Handler, Inbox, free_port, link_in, run_signoff, write_config
from workflow import config

# The AUTH tests' loopback server accepts a password without TLS, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

def test_example_config_is_valid_as_shipped_from_any_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the policy path must resolve against the config's folder
    loaded = config.load(ROOT / "config.example.toml")
    policy = loaded.policies[0]
    assert policy.file == (ROOT / "policies" / "social-media.md").resolve()
    assert policy.file.is_file()
    assert len(policy.statements) >= 3
    assert loaded.setting.timezone.key == "Europe/London"
    assert loaded.setting.contact == "Questions? Ask the school office."
    assert loaded.schedule.annual_open == (9, 1)
    assert loaded.schedule.send_time == dt.time(8, 0)
    assert loaded.schedule.reminder_after_days == (7, 14)
    assert loaded.schedule.holidays == "GB-ENG"
    assert loaded.mail.password_env == "SIGNOFF_MAIL_PASSWORD"
    assert loaded.database.url == f"sqlite:///{(ROOT / 'instance' / 'signoff.db').resolve()}"


def test_example_config_copied_elsewhere_finds_its_policy_relative_to_itself(tmp_path):
    shutil.copy(ROOT / "config.example.toml", tmp_path / "signoff.toml")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "social-media.md").write_text("# Our own copy\n")
    loaded = config.load(tmp_path / "signoff.toml")
    assert loaded.policies[0].file == (tmp_path / "policies" / "social-media.md").resolve()


def test_example_config_says_where_the_slug_appears(setup, cli, smtp):
    line = next(line for line in (ROOT / "config.example.toml").read_text().splitlines()
                if line.startswith("slug ="))
    comment = line.split("#", 1)[1]
    for place in ("reports", "console addresses", "CSV file names", "never in personal links"):
        assert place in comment, comment
    # And so it is: the report names the policy by its slug; a personal link carries only a token.
    config = setup()
    assert cli("tick", "--at", "2026-09-01T09:00+01:00", config=config).exit_code == 0
    assert "social-media" not in link_in(smtp.inbox.to("amira@example.org")[0])
    report = cli("report", "--format", "csv", "--at", "2026-09-02T09:00+01:00", config=config)
    assert ",social-media," in report.stdout


def _write(tmp_path: Path, old: str | None = None, new: str = "") -> Path:
    """The tests' standard config with one piece of text replaced (checked to be there)."""
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'signoff.db'}", 2525)
    if old is not None:
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
    return path


def test_holiday_country_comes_from_the_config(tmp_path):
    from workflow.calendar import Calendar

    loaded = config.load(_write(tmp_path, 'holidays = "GB-ENG"', 'holidays = "GB-SCT"'))
    assert loaded.schedule.holidays == "GB-SCT"
    scotland = Calendar(loaded.schedule, loaded.setting.timezone)
    assert not scotland.is_working_day(dt.date(2026, 1, 2))


def _one_line_exit_2(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


STATEMENTS = ('statements = ["I have re-read the policy.", "No child or parent is my online '
              'friend or follower."]')
BAD = [
    # (what is replaced, by what, words the one line must contain)
    ('timezone = "Europe/London"', 'timezone = "Europe/Lundon"', ["[setting] timezone", "Europe/Lundon"]),
    ('annual_open = "09-01"', 'annual_open = "13-01"', ["[schedule] annual_open", "13-01"]),
    ('annual_open = "09-01"', 'annual_open = "02-30"', ["[schedule] annual_open", "02-30"]),
    ('annual_open = "09-01"', 'annual_open = "9-1"', ["[schedule] annual_open", "9-1"]),
    ('annual_open = "09-01"', 'annual_open = 901', ["[schedule] annual_open"]),
    ('send_time = "08:00"', 'send_time = "25:00"', ["[schedule] send_time"]),
    ("escalate_after_days = 21", 'escalate_after_days = "21"', ["[schedule] escalate_after_days", "'21'"]),
    ("escalate_after_days = 21", "escalate_after_days = true", ["[schedule] escalate_after_days", "True"]),
    ("escalate_after_days = 21", "escalate_after_days = 2.5", ["[schedule] escalate_after_days"]),
    ("digest_every_days = 7", "digest_every_days = 0", ["[schedule] digest_every_days"]),
    ("port = 2525", 'port = "2525"', ["[mail] port"]),
    ("working_days_only = true", 'working_days_only = "yes"', ["[schedule] working_days_only"]),
    ("reminder_after_days = [7, 14]", "reminder_after_days = [14, 7]",
     ["[schedule] reminder_after_days", "increasing"]),
    ("reminder_after_days = [7, 14]", "reminder_after_days = [7, 7]",
     ["[schedule] reminder_after_days"]),
    ("reminder_after_days = [7, 14]", 'reminder_after_days = [7, "14"]',
     ["[schedule] reminder_after_days"]),
    ("reminder_after_days = [7, 14]", "reminder_after_days = [true]",
     ["[schedule] reminder_after_days"]),
    ('holidays = "GB-ENG"', 'holidays = "XX"', ["[schedule] holidays"]),
    ('holidays = "GB-ENG"', 'holidays = "GB-XYZ"', ["[schedule] holidays"]),
    ('email = "head@example.org"', 'email = "head.example.org"', ["[head_teacher] email", "head.example.org"]),
    ('email = "head@example.org"', 'email = "head@example.org\\nBcc: x@evil.example"',
     ["[head_teacher] email"]),
    # The head's name has its own key; "Name <addr>" here would make a broken To: header.
    ('email = "head@example.org"', 'email = "Helen <head@example.org>"', ["[head_teacher] email"]),
    ('sender = "Policy Reminders <noreply@example.org>"', 'sender = "Policy Reminders <noreply@>"',
     ["[mail] sender"]),
    ('sender = "Policy Reminders <noreply@example.org>"', 'sender = "noreply"', ["[mail] sender"]),
    ('sender = "Policy Reminders <noreply@example.org>"',
     'sender = "Reminders <noreply@example.org>, other@example.org"', ["[mail] sender"]),
    ('admin_email = "office@example.org"', 'admin_email = "office@@example.org"', ["[mail] admin_email"]),
    ('base_url = "http://signoff.test"', 'base_url = "signoff.test"', ["[setting] base_url"]),
    ('file = "policy.md"', 'file = "missing.md"', ["[policy 1] file", "missing.md"]),
    ('timezone = "Europe/London"', 'timezone = "Europe/London"\ntimezon = "UTC"',
     ["[setting] timezon", "not a known key"]),
    ("[scheduler]", "[schedular]", ["schedular", "not a known key"]),
    ('statements = ["I have re-read the policy.", "No child or parent is my online friend or follower."]',
     "statements = []", ["[policy 1] statements"]),
    ('slug = "social-media"', 'slug = "Social Media"', ["[policy 1] slug"]),
    ("interval_seconds = 300", "interval_seconds = 1", ["[scheduler] interval_seconds"]),
    ('base_url = "http://signoff.test"',
     'base_url = "http://signoff.test"\ncontact = "' + "x" * 201 + '"',
     ["[setting] contact", "200 characters"]),
    ('base_url = "http://signoff.test"',
     'base_url = "http://signoff.test"\ncontact = "Ask\\nthe office"',
     ["[setting] contact", "one line"]),
    ('base_url = "http://signoff.test"', 'base_url = "http://signoff.test"\ncontact = 42',
     ["[setting] contact"]),
    (STATEMENTS, STATEMENTS + '\n[[closure]]\nname = "Christmas"\nfrom = "2026-12-19"\n'
     'to = "04/01/2027"', ["[closure 1] to", "YYYY-MM-DD"]),
    (STATEMENTS, STATEMENTS + '\n[[closure]]\nname = "Christmas"\nfrom = "2026-12-19"\n'
     'to = "2026-12-01"', ["[closure 1] to", "before from"]),
    (STATEMENTS, STATEMENTS + '\n[[closure]]\nname = "Christmas"\nfrom = "2026-12-19"\n'
     'until = "2027-01-04"', ["[closure 1] until", "not a known key"]),
]


@pytest.mark.parametrize("old,new,needles", BAD, ids=[b[1].split("\n")[-1][:40] for b in BAD])
def test_bad_value_is_one_line_naming_file_and_key(tmp_path, cli, old, new, needles):
    path = _write(tmp_path, old, new)
    _one_line_exit_2(cli("init", config=path), str(path), *needles)
    assert not (tmp_path / "signoff.db").exists()  # stopped before touching anything


@pytest.mark.parametrize("table", ["setting", "head_teacher", "mail", "schedule"])
def test_missing_required_table(tmp_path, cli, table):
    path = _write(tmp_path)
    text = path.read_text()
    start = text.index(f"[{table}]")
    end = text.index("\n[", start + 1)
    path.write_text(text[:start] + text[end + 1:])
    _one_line_exit_2(cli("init", config=path), str(path), table, "required")


def test_missing_policy_table(tmp_path, cli):
    path = _write(tmp_path)
    text = path.read_text()
    path.write_text(text[:text.index("[[policy]]")])
    _one_line_exit_2(cli("init", config=path), str(path), "policy")


def test_contact_is_optional_and_up_to_200_characters(tmp_path):
    assert config.load(_write(tmp_path)).setting.contact is None
    for given, kept in (('"  Questions? Ask the office. "', "Questions? Ask the office."),
                        ('""', None), ('"' + "x" * 200 + '"', "x" * 200)):
        path = _write(tmp_path, 'base_url = "http://signoff.test"',
                      f'base_url = "http://signoff.test"\ncontact = {given}')
        assert config.load(path).setting.contact == kept


def test_missing_required_key(tmp_path, cli):
    path = _write(tmp_path, 'base_url = "http://signoff.test"\n', "")
    _one_line_exit_2(cli("init", config=path), str(path), "[setting] base_url", "required")


def test_invalid_toml(tmp_path, cli):
    path = _write(tmp_path, 'name = "Test Nursery"', 'name = "Test Nursery')
    _one_line_exit_2(cli("init", config=path), str(path), "not valid TOML")


def test_not_utf8_config(tmp_path, cli):
    path = _write(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"Test Nursery", b"T\xe9st Nursery"))
    _one_line_exit_2(cli("init", config=path), str(path))


def test_missing_config_file(tmp_path, cli):
    path = tmp_path / "nowhere.toml"
    _one_line_exit_2(cli("init", config=path), str(path), "not found")


@pytest.mark.slow
def test_missing_config_file_as_a_real_process(tmp_path):
    path = tmp_path / "nowhere.toml"
    result = run_signoff("tick", config=path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and str(path) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_bad_config_as_a_real_process(tmp_path):
    path = _write(tmp_path, 'timezone = "Europe/London"', 'timezone = "Mars/Olympus"')
    result = run_signoff("report", config=path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "[setting] timezone" in lines[0] and str(path) in lines[0]


def test_password_is_not_a_config_key(tmp_path, cli):
    path = _write(tmp_path, 'server = "127.0.0.1"', 'server = "127.0.0.1"\npassword = "hunter2"')
    line = _one_line_exit_2(cli("init", config=path), "[mail] password")
    assert "hunter2" not in line


# --- the SMTP password comes from the environment ----------------------------------------------

def test_username_without_password_env_stops_tick_and_sends_nothing(tmp_path, setup, cli, smtp,
                                                                    monkeypatch):
    path = setup()
    text = path.read_text()
    path.write_text(text.replace('server = "127.0.0.1"',
                                 'server = "127.0.0.1"\nusername = "signoff"\n'
                                 'password_env = "SIGNOFF_TEST_SMTP_PASSWORD"'))
    monkeypatch.delenv("SIGNOFF_TEST_SMTP_PASSWORD", raising=False)
    result = cli("tick", "--at", "2026-09-01T09:00+01:00", config=path)
    assert result.exit_code == 1
    assert "SIGNOFF_TEST_SMTP_PASSWORD" in result.stderr
    assert "Traceback" not in result.output
    assert len(smtp.inbox) == 0


class _Authenticator:
    def __init__(self, username: str, password: str):
        self.username, self.password = username.encode(), password.encode()
        self.seen: list[tuple[bytes, bytes]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        self.seen.append((auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == (self.username, self.password)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535


@pytest.fixture
def auth_smtp():
    inbox, port = Inbox(), free_port()
    authenticator = _Authenticator("signoff", "s3cret-from-env")
    controller = Controller(_Handler(inbox), hostname="127.0.0.1", port=port,
                            authenticator=authenticator, auth_required=True,
                            auth_require_tls=False)
    controller.start()
    try:
        yield port, inbox, authenticator
    finally:
        controller.stop()


def _auth_config(tmp_path, db_url, port, cli) -> Path:
    path = write_config(tmp_path, db_url, port)
    path.write_text(path.read_text().replace(
        'server = "127.0.0.1"', 'server = "127.0.0.1"\nusername = "signoff"\n'
                                'password_env = "SIGNOFF_TEST_SMTP_PASSWORD"'))
    assert cli("init", config=path).exit_code == 0
    (tmp_path / "staff.csv").write_text("name,email\nAmira Khan,amira@example.org\n")
    assert cli("staff", "import", str(tmp_path / "staff.csv"), config=path).exit_code == 0
    return path


def test_password_from_env_logs_in(tmp_path, db_url, auth_smtp, cli, monkeypatch):
    port, inbox, authenticator = auth_smtp
    path = _auth_config(tmp_path, db_url, port, cli)
    monkeypatch.setenv("SIGNOFF_TEST_SMTP_PASSWORD", "s3cret-from-env")
    result = cli("tick", "--at", "2026-09-01T09:00+01:00", config=path)
    assert result.exit_code == 0, result.output
    assert authenticator.seen == [(b"signoff", b"s3cret-from-env")]
    assert [m["To"].addresses[0].addr_spec for m in inbox.messages] == ["amira@example.org"]
    assert "s3cret" not in result.output


def test_wrong_password_stops_tick_with_one_clear_line(tmp_path, db_url, auth_smtp, cli,
                                                       monkeypatch):
    port, inbox, _ = auth_smtp
    path = _auth_config(tmp_path, db_url, port, cli)
    monkeypatch.setenv("SIGNOFF_TEST_SMTP_PASSWORD", "wrong-password")
    result = cli("tick", "--at", "2026-09-01T09:00+01:00", config=path)
    assert result.exit_code == 1
    assert "refused the login" in result.stderr
    assert "wrong-password" not in result.output
    assert "Traceback" not in result.output
    assert len(inbox) == 0
    # Nothing was spent: with the right password the next tick sends the reminder.
    monkeypatch.setenv("SIGNOFF_TEST_SMTP_PASSWORD", "s3cret-from-env")
    again = cli("tick", "--at", "2026-09-01T09:10+01:00", config=path)
    assert again.exit_code == 0, again.output
    assert len(inbox) == 1
