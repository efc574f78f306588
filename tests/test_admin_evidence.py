"""A cycle's evidence, page and CSV alike, is about the people that cycle asked: people who have left
since still show (with what they did), people who joined later do not, and an unconfirmed person's
version is the text the cycle asked about, not today's. `signoff report` stays one row per active
person. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io

import time_machine
from sqlalchemy import select

from admin_helpers import ADMIN, PASSWORD, policy_fields, post, save_policy, sign_in
from conftest import ROOT, at, link_in
from helpers import confirm_by_page
from workflow import config as config_mod
from workflow.app import create_app
from workflow.models import Cycle, Policy

CONTRACT = ("name,email,policy,version,status,first_sent_at,reminders_sent,last_sent_at,escalated,"
            "confirmed_at,delivery").split(",")
TEXT_2026 = hashlib.sha256((ROOT / "policies" / "social-media.md").read_bytes()).hexdigest()


def _import(cli, config, text: str) -> None:
    path = config.parent / "changes.csv"
    path.write_text(text)
    result = cli("staff", "import", str(path), config=config)
    assert result.exit_code == 0, result.output


def _tick(cli, config, when: str) -> None:
    result = cli("tick", "--at", when, config=config)
    assert result.exit_code == 0, result.output


class Console:
    """The console's evidence pages at a given moment, as a signed-in admin sees them."""

    def __init__(self, config):
        self.app = create_app(config_mod.load(config))
        self.app.config["TESTING"] = False

    def cycle_id(self, year: int) -> int:
        with self.app.extensions["signoff"].db.read() as session:
            return session.scalar(select(Cycle.id).join(Policy).where(
                Policy.slug == "social-media", Cycle.year == year))

    def look(self, when: str, year: int) -> tuple[list[str], dict[str, dict[str, str]], str]:
        """The CSV's header and rows by address, and the evidence page, for `year`'s cycle."""
        with time_machine.travel(at(when), tick=False):
            client = self.app.test_client()
            assert sign_in(client).status_code == 303
            cycle = self.cycle_id(year)
            export = client.get(f"/admin/evidence/{cycle}/export.csv")
            page = client.get(f"/admin/evidence/{cycle}").get_data(as_text=True)
        assert export.status_code == 200
        table = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
        header = table[0]
        rows = {row["email"]: row for row in (dict(zip(header, r)) for r in table[1:])}
        return header, rows, page

    def edit_text(self, text: str, when: str) -> None:
        """The office manager replaces the policy's text in the console, and records the
        governors' approval, which puts it in force."""
        with time_machine.travel(at(when), tick=False):
            client = self.app.test_client()
            assert sign_in(client).status_code == 303
            with self.app.extensions["signoff"].db.read() as session:
                policy_id = session.scalar(select(Policy.id).filter_by(slug="social-media"))
            _, saved = save_policy(client, f"/admin/policies/{policy_id}",
                                   {**policy_fields(client, policy_id), "text": text,
                                    "change": "minor", "note": "Revised wording"})
            assert saved.status_code == 303, saved.get_data(as_text=True)
            approved = post(client, f"/admin/policies/{policy_id}/approve",
                            {"name": "Jane Smith", "role": "Chair of Governors",
                             "approved_on": at(when).date().isoformat()})
            assert approved.status_code == 303, approved.get_data(as_text=True)

    def close(self):
        self.app.extensions["signoff"].db.dispose()


def _report(cli, config, when: str) -> dict[str, dict[str, str]]:
    result = cli("report", "--format", "csv", "--at", when, config=config)
    assert result.exit_code == 0, result.output
    return {row["email"]: row for row in csv.DictReader(io.StringIO(result.stdout))}


def test_evidence_is_the_people_each_cycle_asked(setup, cli, smtp, tmp_path):
    # Set up before the first cycle, so the first policy text is older than the cycle.
    with time_machine.travel(at("2026-08-20 10:00"), tick=False):
        config = setup()
        added = cli("admin", "add", ADMIN, "--password-stdin", config=config,
                    input=PASSWORD + "\n")
        assert added.exit_code == 0, added.output
    _tick(cli, config, "2026-09-01T09:00+01:00")
    confirm_by_page(config, link_in(smtp.inbox.to("chloe@example.org")[0]), at("2026-09-02 10:00"))
    # Chloe (confirmed) and Ben (not) leave; Dan joins but no tick has asked him yet.
    _import(cli, config, "name,email,active\nChloe Evans,chloe@example.org,no\n"
                         "Ben Lewis,ben@example.org,no\nDan Okafor,dan@example.org,yes\n")
    console = Console(config)
    try:
        # The current cycle: everyone it asked, leavers included, and active staff not asked yet.
        header, rows, page = console.look("2026-09-10 12:00", 2026)
        assert header[:len(CONTRACT)] == CONTRACT
        assert sorted(rows) == ["amira@example.org", "ben@example.org", "chloe@example.org",
                                "dan@example.org"]
        chloe = rows["chloe@example.org"]
        assert chloe["status"] == "confirmed" and chloe["method"] == "self"
        assert chloe["confirmed_at"] == "2026-09-02T10:00:00+01:00"
        assert rows["ben@example.org"]["status"] == "pending"
        assert rows["ben@example.org"]["reminders_sent"] == "1"
        assert rows["dan@example.org"]["status"] == "pending"
        assert rows["dan@example.org"]["reminders_sent"] == "0"
        assert {r["version"] for r in rows.values()} == {TEXT_2026}
        assert "Chloe Evans" in page
        assert "Ben Lewis &lt;ben@example.org&gt; (no longer active)" in page
        assert "Dan Okafor &lt;dan@example.org&gt; (not asked yet)" in page
        # The report is still one row per active person.
        assert sorted(_report(cli, config, "2026-09-10T12:00+01:00")) == [
            "amira@example.org", "dan@example.org"]

        # A year on, with a new policy text (typed in the console) and Erin new on the roster.
        revised = "# Use of Social Media Policy\n\nRevised for 2027.\n"
        console.edit_text(revised, "2027-08-20 10:00")
        _tick(cli, config, "2027-09-01T09:00+01:00")
        _import(cli, config, "name,email\nErin Walsh,erin@example.org\n")
        text_2027 = hashlib.sha256(revised.encode()).hexdigest()

        _, rows, page = console.look("2027-09-10 12:00", 2026)
        assert sorted(rows) == ["amira@example.org", "ben@example.org", "chloe@example.org"]
        # Last year's counts: Chloe's confirmation counts though she has left; Ben, who left
        # without confirming, is listed apart and is not "not confirmed".
        lead = " ".join(page[page.index('id="evidence-counts"'):].split("</p>")[0].split())
        assert "1 confirmed, 0 exempt, 1 not confirmed (1 overdue)." in lead
        assert "Not counted: 1 person asked this cycle who has since left" in lead
        gone = page[page.index("<h2>Asked, then left without confirming</h2>"):]
        assert "Ben Lewis &lt;ben@example.org&gt; (no longer active)" in gone
        not_confirmed = page[page.index("<h2>Not confirmed</h2>"):page.index("<h2>Asked, then")]
        assert "Amira Khan" in not_confirmed and "Ben Lewis" not in not_confirmed
        assert rows["chloe@example.org"]["status"] == "confirmed"
        assert rows["amira@example.org"]["status"] == "pending"
        assert {r["version"] for r in rows.values()} == {TEXT_2026}
        assert TEXT_2026 in page and text_2027 not in page
        assert "Dan Okafor" not in page and "Erin Walsh" not in page

        _, rows, page = console.look("2027-09-10 12:00", 2027)
        assert sorted(rows) == ["amira@example.org", "dan@example.org", "erin@example.org"]
        assert {r["version"] for r in rows.values()} == {text_2027}
        assert {r["status"] for r in rows.values()} == {"pending"}
        assert rows["erin@example.org"]["reminders_sent"] == "0"
        assert text_2027 in page
    finally:
        console.close()
