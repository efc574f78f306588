"""The emails as people receive them, through real ticks to a real SMTP server: the reminder, the
follow-up and the head teacher's digest; and no header can be smuggled in from the roster."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from conftest import initialise, link_in, write_config
from helpers import CONTACT, confirm_by_page, flat, parts, set_first_name, with_contact

POLICY = "Use of Social Media Policy"
NOTE = "Check your privacy settings are still set high."


def tick(cli, config: Path, when: str) -> None:
    result = cli("tick", "--at", when, config=config)
    assert result.exit_code in (0, 1), result.output  # 1: a refusal in the story, checked below
    assert "Traceback" not in result.output


def test_first_reminder(setup, cli, smtp):
    config = setup()
    set_first_name(config, "amira@example.org", "Amira")
    tick(cli, config, "2026-09-01T09:00+01:00")
    assert len(smtp.inbox) == 3
    message = smtp.inbox.to("amira@example.org")[0]

    assert message["To"].addresses[0].display_name == "Amira Khan"
    assert message["To"].addresses[0].addr_spec == "amira@example.org"
    assert len(message["To"].addresses) == 1
    assert message["From"].addresses[0].addr_spec == "noreply@example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() in ("multipart/alternative", "multipart/mixed")
    assert POLICY in message["Subject"]
    assert "22 September" in message["Subject"]  # by when: 21 days after 1 September

    link = link_in(message)  # the same link in both parts
    assert link.startswith("http://signoff.test/c/")
    text, html = parts(message)
    for body in (text, flat(html)):
        assert "Dear Amira," in body and "Amira Khan" not in body  # greeted by first name
        assert POLICY in body
        assert "Re-read the policy" in body
        assert NOTE in body                                 # check privacy settings
        assert "Tuesday 22 September 2026" in body          # by when
        assert "Why you are getting this" in body           # why
        assert "you are on the staff list at Test Nursery" in body
    assert f'href="{link}"' in html


def test_every_message_has_its_own_message_id_and_link(setup, cli, smtp):
    config = setup()
    tick(cli, config, "2026-09-01T09:00+01:00")
    tick(cli, config, "2026-09-08T09:00+01:00")
    assert len(smtp.inbox) == 6
    ids = [m["Message-ID"] for m in smtp.inbox.messages]
    assert all(re.fullmatch(r"<[^<>@\s]+@example\.org>", i) for i in ids), ids
    assert len(set(ids)) == 6
    links = [link_in(m) for m in smtp.inbox.messages]
    assert len(set(links)) == 6  # each email carries a fresh token


def test_follow_up(setup, cli, smtp):
    config = setup()
    set_first_name(config, "ben@example.org", "Ben")
    tick(cli, config, "2026-09-01T09:00+01:00")
    tick(cli, config, "2026-09-08T09:00+01:00")
    first, follow_up = smtp.inbox.to("ben@example.org")
    assert follow_up["Subject"] != first["Subject"]
    assert POLICY in follow_up["Subject"] and "22 September" in follow_up["Subject"]
    assert follow_up["Auto-Submitted"] == "auto-generated"
    assert follow_up["To"].addresses[0].display_name == "Ben Lewis"
    link = link_in(follow_up)
    assert link != link_in(first)
    text, html = parts(follow_up)
    for body in (text, flat(html)):
        assert "Dear Ben," in body and "Ben Lewis" not in body
        assert "not yet had your confirmation" in body
        assert "1 September" in body  # when we first asked
        assert "Re-read the policy" in body and NOTE in body
        assert "Tuesday 22 September 2026" in body
        assert "Why you are getting this" in body


def test_both_links_keep_working_after_the_follow_up(setup, cli, smtp):
    config = setup()
    tick(cli, config, "2026-09-01T09:00+01:00")
    tick(cli, config, "2026-09-08T09:00+01:00")
    first, _ = smtp.inbox.to("ben@example.org")
    confirm_by_page(config, link_in(first), dt.datetime(2026, 9, 9, 10, tzinfo=dt.timezone.utc))
    tick(cli, config, "2026-09-15T09:00+01:00")
    assert len(smtp.inbox.to("ben@example.org")) == 2  # confirmed: no second follow-up
    assert len(smtp.inbox.to("amira@example.org")) == 3


def test_digest_lists_every_overdue_person(setup, cli, smtp):
    config = setup()
    tick(cli, config, "2026-09-01T09:00+01:00")
    chloe = smtp.inbox.to("chloe@example.org")[0]
    confirm_by_page(config, link_in(chloe), dt.datetime(2026, 9, 2, 10, tzinfo=dt.timezone.utc))
    smtp.inbox.refuse["ben@example.org"] = "550 5.1.1 No such user"
    tick(cli, config, "2026-09-08T09:00+01:00")
    tick(cli, config, "2026-09-15T09:00+01:00")
    assert smtp.inbox.to("head@example.org") == []  # nobody overdue yet: no digest
    alert = smtp.inbox.to("office@example.org")[0]  # the office hears of the bounce at once
    assert [a.addr_spec for a in alert["To"].addresses] == ["office@example.org"]
    assert "ben@example.org" in alert["Subject"] and "550 5.1.1" in parts(alert)[0]

    # Asked to confirm by Tuesday 22 September: not overdue on that day, overdue the next.
    tick(cli, config, "2026-09-22T09:00+01:00")
    assert smtp.inbox.to("head@example.org") == []
    tick(cli, config, "2026-09-23T09:00+01:00")
    digests = smtp.inbox.to("head@example.org")
    assert len(digests) == 1
    digest = digests[0]
    assert digest["To"].addresses[0].display_name == "Helen Head"
    assert digest["Auto-Submitted"] == "auto-generated"
    assert digest["Message-ID"]
    assert digest.get_body(("plain",)) is not None and digest.get_body(("html",)) is not None
    text, html = parts(digest)
    assert "Dear Helen Head" in text

    lines = {who: next(line for line in text.splitlines() if f"{who}@example.org" in line)
             for who in ("amira", "ben")}
    assert lines["amira"] == ("- Amira Khan <amira@example.org>, Practitioner — Use of Social "
                              "Media Policy: asked to confirm by Tuesday 22 September 2026, "
                              "1 day past, 3 reminders sent")
    assert lines["ben"].startswith("- Ben Lewis <ben@example.org>, Room Leader — ")
    assert "1 day past, 1 reminder sent" in lines["ben"]
    assert "DELIVERY PROBLEM: failed: 550 5.1.1 No such user" in lines["ben"]
    assert "chloe@example.org" not in text and "chloe@example.org" not in html
    assert "confirmed 1 of 3" in text
    assert "the email address on the staff list may be wrong" in text

    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    heads = [flat(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", rows[0], re.S)]
    assert heads == ["Name", "Address", "Role", "Policy", "Asked to confirm by", "Days past",
                     "Reminders sent", "Delivery problem"]
    cells = {m: [flat(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
             for row in rows for m in ("amira", "ben") if f"{m}@example.org" in row}
    assert cells["amira"] == ["Amira Khan", "amira@example.org", "Practitioner", POLICY,
                              "Tue 22 Sep 2026", "1", "3", ""]
    assert cells["ben"][:3] == ["Ben Lewis", "ben@example.org", "Room Leader"]
    assert cells["ben"][-1] == "failed: 550 5.1.1 No such user"
    assert "confirmed 1 of 3" in flat(html)
    assert "2 people have not confirmed the policy — 23 September 2026" in digest["Subject"]

    # Weekly while anyone is overdue; not again the next day.
    tick(cli, config, "2026-09-24T09:00+01:00")
    assert len(smtp.inbox.to("head@example.org")) == 1
    tick(cli, config, "2026-09-30T09:00+01:00")
    assert len(smtp.inbox.to("head@example.org")) == 2
    later, _ = parts(smtp.inbox.to("head@example.org")[1])
    assert "asked to confirm by Tuesday 22 September 2026, 8 days past" in later


def test_a_digest_with_no_delivery_problem_says_nothing_about_delivery(setup, cli, smtp):
    config = setup()
    for day in ("01", "08", "15", "23"):
        tick(cli, config, f"2026-09-{day}T09:00+01:00")
    text, html = parts(smtp.inbox.to("head@example.org")[0])
    assert text.count("1 day past") == 3
    for body in (text, flat(html)):
        assert "DELIVERY PROBLEM" not in body.upper()
        assert "may be wrong" not in body and "could not be delivered" not in body
    heads = [flat(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", html, re.S)]
    assert heads == ["Name", "Address", "Role", "Policy", "Asked to confirm by", "Days past",
                     "Reminders sent"]
    # The console's people page, filtered to the overdue, in both parts.
    assert "http://signoff.test/admin/people?status=overdue" in text
    assert 'href="http://signoff.test/admin/people?status=overdue"' in html


def test_inactive_person_is_in_no_digest(setup, cli, smtp, tmp_path):
    config = setup()
    tick(cli, config, "2026-09-01T09:00+01:00")
    (tmp_path / "leaver.csv").write_text("name,email,active\nBen Lewis,ben@example.org,no\n")
    assert cli("staff", "import", str(tmp_path / "leaver.csv"), config=config).exit_code == 0
    for day in ("08", "15", "23"):
        tick(cli, config, f"2026-09-{day}T09:00+01:00")
    text, html = parts(smtp.inbox.to("head@example.org")[0])
    assert "amira@example.org" in text and "chloe@example.org" in text
    assert "ben@example.org" not in text and "ben@example.org" not in html
    assert "confirmed 0 of 2" in text


def test_no_header_injection_from_roster_names(setup, cli, smtp):
    roster = ('name,email\n'
              '"Eve\r\nBcc: victim@evil.example",eve@example.org\n'
              '"Mallory\nSubject: hacked\nCc: cc@evil.example",mallory@example.org\n'
              '"Smith, Jo <other@evil.example>",jo@example.org\n')
    config = setup(roster=roster)
    tick(cli, config, "2026-09-01T09:00+01:00")
    assert len(smtp.inbox) == 3
    for message in smtp.inbox.messages:
        assert message["Bcc"] is None and message["Cc"] is None
        assert len(message.get_all("Subject")) == 1 and "hacked" not in message["Subject"]
        assert len(message.get_all("To")) == 1
        assert len(message["To"].addresses) == 1
        for name, value in message.items():
            assert "evil.example" not in value or name == "To", (name, value)
    to = {m["To"].addresses[0].addr_spec: m["To"].addresses[0].display_name
          for m in smtp.inbox.messages}
    assert to == {"eve@example.org": "Eve Bcc: victim@evil.example",
                  "mallory@example.org": "Mallory Subject: hacked Cc: cc@evil.example",
                  "jo@example.org": "Smith, Jo <other@evil.example>"}
    eve = smtp.inbox.to("eve@example.org")[0]
    assert "Dear Eve" in parts(eve)[0]  # greeted, in the body only


def test_names_with_accents_and_punctuation_reach_the_to_header_intact(setup, cli, smtp):
    roster = ('name,email\n'
              'Zoë Brown,zoe@example.org\n'
              '"Siân O\'Neill, Deputy",sian@example.org\n'
              'Amira Khan,amira@example.org\n')
    config = setup(roster=roster)
    tick(cli, config, "2026-09-01T09:00+01:00")
    to = {m["To"].addresses[0].addr_spec: m["To"].addresses[0].display_name
          for m in smtp.inbox.messages}
    assert to == {"zoe@example.org": "Zoë Brown", "sian@example.org": "Siân O'Neill, Deputy",
                  "amira@example.org": "Amira Khan"}
    assert all(len(m["To"].addresses) == 1 for m in smtp.inbox.messages)
    assert "Dear Zoë" in parts(smtp.inbox.to("zoe@example.org")[0])[0]


def test_someone_without_a_first_name_is_greeted_by_their_full_name(setup, cli, smtp):
    config = setup()
    set_first_name(config, "amira@example.org", "Amira")
    set_first_name(config, "chloe@example.org", "")
    tick(cli, config, "2026-09-01T09:00+01:00")
    for body in (parts(smtp.inbox.to("chloe@example.org")[0])[0],
                 flat(parts(smtp.inbox.to("chloe@example.org")[0])[1])):
        assert "Dear Chloe Evans," in body
    assert "Dear Amira," in parts(smtp.inbox.to("amira@example.org")[0])[0]


@pytest.mark.parametrize("contact", [CONTACT, None], ids=["contact set", "no contact"])
def test_reminder_and_follow_up_carry_the_contact_line_when_set_and_none_when_not(
        tmp_path, db_url, smtp, cli, contact):
    config = write_config(tmp_path, db_url, smtp.port)
    if contact:
        with_contact(config, contact)
    initialise(cli, config)
    tick(cli, config, "2026-09-01T09:00+01:00")
    tick(cli, config, "2026-09-08T09:00+01:00")
    reminder, follow_up = smtp.inbox.to("amira@example.org")
    assert "Reminder" in follow_up["Subject"] and "Reminder" not in reminder["Subject"]
    for message in (reminder, follow_up):
        text, html = parts(message)
        for part in (text, flat(html)):
            assert part.count(CONTACT) == (1 if contact else 0), part
            assert "None" not in part
