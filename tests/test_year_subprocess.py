"""A full year's cycle driven with the real `signoff` command, one process per step, as cron would:
init, roster import, ticks across the year, and the CSV report along the way."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

import pytest
import time_machine

from conftest import at, hidden_fields, link_in, run_signoff, write_config

pytestmark = pytest.mark.slow  # each starts signoff or another program as a process

ROSTER = """\
name,email,role,start_date,active
Amira Khan,amira@example.org,Practitioner,,yes
Ben Lewis,ben@example.org,Room Leader,,yes
Chloe Evans,chloe@example.org,Teacher,,yes
Frank Green,frank@example.org,Cook,,no
"""
HEAD = "head@example.org"


class Year:
    def __init__(self, config, inbox):
        self.config, self.inbox = config, inbox

    def run(self, *args: str) -> str:
        result = run_signoff(*args, config=self.config)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    def tick(self, when: str) -> list[str]:
        """Tick at that London time; the addresses it sent to, sorted."""
        before = len(self.inbox)
        self.run("tick", "--at", at(when).isoformat())
        with self.inbox.lock:
            return sorted(m["To"].addresses[0].addr_spec for m in self.inbox.messages[before:])

    def report(self, when: str) -> dict[str, dict[str, str]]:
        text = self.run("report", "--format", "csv", "--at", at(when).isoformat())
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and list(rows[0])[:11] == [
            "name", "email", "policy", "version", "status", "first_sent_at", "reminders_sent",
            "last_sent_at", "escalated", "confirmed_at", "delivery"]
        return {row["email"].split("@")[0]: row for row in rows}

    def digest(self) -> str:
        return self.inbox.to(HEAD)[-1].get_body(("plain",)).get_content()

    def import_roster(self, text: str) -> None:
        path = self.config.parent / "staff.csv"
        path.write_text(text)
        self.run("staff", "import", str(path))


@pytest.fixture
def year(tmp_path, smtp):
    # SQLite only: the same year runs on both databases in-process in test_cycle.py.
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'signoff.db'}", smtp.port)
    y = Year(config, smtp.inbox)
    assert "database ready" in y.run("init")
    y.import_roster(ROSTER)
    return y


@pytest.fixture
def confirm(year):
    from workflow import config
    from workflow.app import create_app

    app = create_app(config.load(year.config))

    def person_confirms(email: str, when: str) -> None:
        path = urlsplit(link_in(year.inbox.to(email)[-1])).path
        client = app.test_client()
        with time_machine.travel(at(when), tick=False):
            page = client.get(path).get_data(as_text=True)
            done = client.post(path, data={**hidden_fields(page), "s0": "y", "s1": "y"})
            assert done.status_code == 303, done.get_data(as_text=True)

    yield person_confirms
    app.extensions["signoff"].db.dispose()


def test_a_year_of_ticks_as_subprocesses(year, confirm):
    y = year
    assert y.tick("2026-09-01 08:00") == ["amira@example.org", "ben@example.org",
                                          "chloe@example.org"]
    report = y.report("2026-09-01 09:00")
    assert sorted(report) == ["amira", "ben", "chloe"]  # Frank is inactive
    assert {r["status"] for r in report.values()} == {"pending"}
    assert report["amira"]["first_sent_at"] == "2026-09-01T08:00:00+01:00"
    assert report["amira"]["reminders_sent"] == "1" and report["amira"]["delivery"] == "ok"

    confirm("amira@example.org", "2026-09-03 12:00")
    assert y.tick("2026-09-08 08:00") == ["ben@example.org", "chloe@example.org"]
    assert y.tick("2026-09-15 08:00") == ["ben@example.org", "chloe@example.org"]
    assert y.tick("2026-09-22 08:00") == []  # the date the reminders asked for
    assert y.tick("2026-09-23 08:00") == [HEAD]
    assert "Ben Lewis" in y.digest() and "Chloe Evans" in y.digest()
    assert "Amira" not in y.digest() and "Frank" not in y.digest()
    report = y.report("2026-09-23 09:00")
    assert report["amira"]["status"] == "confirmed"
    assert report["amira"]["confirmed_at"] == "2026-09-03T12:00:00+01:00"
    assert report["amira"]["escalated"] == "no"
    assert report["ben"]["escalated"] == report["chloe"]["escalated"] == "yes"
    assert report["chloe"]["reminders_sent"] == "3"
    assert report["chloe"]["last_sent_at"] == "2026-09-15T08:00:00+01:00"

    # Ben leaves; Gina starts on Monday 4 January.
    y.import_roster("name,email,start_date,active\nBen Lewis,ben@example.org,,no\n"
                    "Gina Hart,gina@example.org,2027-01-04,yes\n")
    assert y.tick("2026-09-30 08:00") == [HEAD]
    assert "Chloe Evans" in y.digest() and "Ben" not in y.digest()
    # The server was off for the autumn: one digest, not a backlog.
    assert y.tick("2026-12-24 08:00") == [HEAD]
    # The weekly digest came due on Thursday 31 December; Gina's first reminder waits for 08:00.
    assert y.tick("2027-01-04 07:59") == [HEAD]
    assert "Gina" not in y.digest()
    assert y.tick("2027-01-04 08:00") == ["gina@example.org"]

    confirm("chloe@example.org", "2027-01-05 10:00")
    assert y.tick("2027-01-11 08:00") == ["gina@example.org"]  # nobody overdue: no digest
    # Gina was asked to confirm by Monday 25 January: her last follow-up then, the digest the
    # day after.
    assert y.tick("2027-01-25 08:00") == ["gina@example.org"]
    assert y.tick("2027-01-26 08:00") == [HEAD]
    assert "Gina Hart" in y.digest() and "Chloe" not in y.digest()
    confirm("gina@example.org", "2027-02-01 16:30")
    assert y.tick("2027-02-08 08:00") == []
    assert y.tick("2027-06-01 08:00") == []

    report = y.report("2027-08-31 12:00")
    assert sorted(report) == ["amira", "chloe", "gina"]
    assert {r["status"] for r in report.values()} == {"confirmed"}
    assert [report[p]["reminders_sent"] for p in ("amira", "chloe", "gina")] == ["1", "3", "3"]
    assert y.inbox.to("frank@example.org") == []

    # The 2027 cycle opens: every active person is asked again.
    assert y.tick("2027-09-01 08:00") == ["amira@example.org", "chloe@example.org",
                                          "gina@example.org"]
    report = y.report("2027-09-01 09:00")
    assert {r["status"] for r in report.values()} == {"pending"}
    assert {r["reminders_sent"] for r in report.values()} == {"1"}
    assert {r["confirmed_at"] for r in report.values()} == {""}
