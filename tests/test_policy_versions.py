"""A policy's versions, on both databases: a new text (typed in the console, or a Markdown or Word
file given to `signoff policy version`) is proposed, and reaches staff only once approved; each
approval is recorded with name, role, date and minute reference (`signoff policy approve`, or the
console), and the staff page says who approved the text they read. Confirmations record the
version in force when they were made."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

import time_machine

from admin_helpers import admin, app, clock, console, post, save_policy  # noqa: F401
from admin_helpers import policy_fields
from conftest import at, link_in
from helpers import confirm_by_page, flat

NEW_TEXT = """# Use of Social Media Policy

## Photographs

Never take photographs of children on a personal phone.
"""


def _page(config, link: str, when: str = "2026-09-02 10:00") -> str:
    from workflow import config as config_mod
    from workflow.app import create_app

    web = create_app(config_mod.load(config))
    try:
        with time_machine.travel(at(when), tick=False):
            page = web.test_client().get(urlsplit(link).path)
        assert page.status_code == 200
        return page.get_data(as_text=True)
    finally:
        web.extensions["signoff"].db.dispose()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_a_new_text_reaches_staff_only_once_the_governors_approve_it(setup, cli, smtp, tmp_path):
    config = setup()
    _ok(cli("tick", "--at", at("2026-09-01 08:00").isoformat(), config=config))
    link = link_in(smtp.inbox.to("amira@example.org")[0])
    before = _page(config, link)
    assert "personal phone" not in before and "Approved by" not in before
    (tmp_path / "new.md").write_text(NEW_TEXT)
    said = _ok(cli("policy", "version", "social-media", str(tmp_path / "new.md"), "--minor",
                   "--note", "New section on photographs", config=config))
    assert "proposed" in said and "once approved" in said
    # Proposed, not in force: the page and the report still have the text in force.
    assert "personal phone" not in _page(config, link)
    listed = _ok(cli("policy", "list", config=config))
    assert "in force:" in listed and "no approval recorded" in listed
    assert "proposed:" in listed and "waiting for approval" in listed

    said = _ok(cli("policy", "approve", "social-media", "--name", "Jane Smith", "--role",
                   "Chair of Governors", "--date", "2026-08-28", "--minute", "12/3",
                   config=config))
    assert "in force from now" in said
    page = _page(config, link)
    assert "Never take photographs of children on a personal phone." in page
    assert "Approved by Jane Smith, Chair of Governors, on 28 August 2026." in page
    said = _ok(cli("policy", "approve", "social-media", "--name", "Sam Patel", "--role",
                   "Head Teacher", "--date", "2026-08-29", config=config))
    assert "in force already" in said
    assert ("Approved by Jane Smith, Chair of Governors, on 28 August 2026, and by Sam Patel, "
            "Head Teacher, on 29 August 2026.") in _page(config, link)
    listed = _ok(cli("policy", "list", config=config))
    assert "proposed:" not in listed and "Jane Smith" in listed

    # Her confirmation records the approved text; the report says which.
    confirm_by_page(config, link, at("2026-09-02 10:05"))
    from workflow.policies import sha256

    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(_ok(cli(
        "report", "--format", "csv", "--at", at("2026-09-02 11:00").isoformat(),
        config=config))))}
    assert rows["amira@example.org"]["version"] == sha256(NEW_TEXT)
    assert rows["ben@example.org"]["version"] == sha256(NEW_TEXT)  # what his link shows now
    assert rows["amira@example.org"]["version_approved"] == (
        "Approved by Jane Smith, Chair of Governors, on 28 August 2026, and by Sam Patel, "
        "Head Teacher, on 29 August 2026.")


def test_bad_versions_and_approvals_are_refused_with_a_clear_line(setup, cli, tmp_path):
    config = setup()
    (tmp_path / "new.md").write_text(NEW_TEXT)
    (tmp_path / "policy.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9".encode("latin-1"))
    for args, says in (
            (("version", "nope", str(tmp_path / "new.md"), "--minor", "--note", "n"),
             "no policy 'nope'"),
            (("version", "social-media", str(tmp_path / "new.md"), "--note", "x" * 1001),
             "--note: keep it under 1,000 characters"),
            (("version", "social-media", str(tmp_path / "missing.md"), "--minor", "--note", "n"),
             "cannot read it"),
            (("version", "social-media", str(tmp_path / "policy.pdf"), "--minor", "--note", "n"),
             "give a Word (.docx), Markdown (.md) or text (.txt) file"),
            (("version", "social-media", str(tmp_path / "latin1.txt"), "--minor", "--note", "n"),
             "is not UTF-8 text"),
            (("approve", "social-media", "--name", "J", "--role", "Chair", "--date",
              "2099-01-01"), "is in the future"),
            (("approve", "social-media", "--name", "J", "--role", "Chair", "--date",
              "28/08/2026"), "28/08/2026"),
            (("approve", "social-media", "--name", " ", "--role", "Chair", "--date",
              "2026-08-28"), "--name and --role must be given")):
        result = cli("policy", *args, config=config)
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output and "Traceback" not in result.output, result.output
    # The text in force again is nothing to propose, and not an error.
    said = _ok(cli("policy", "version", "social-media", str(config.parent / "policy.md"),
                   "--minor", "--note", "none", config=config))
    assert "nothing to propose" in said
    # Without --minor a change is material, the safe default: everyone is asked again.
    said = _ok(cli("policy", "version", "social-media", str(tmp_path / "new.md"), config=config))
    assert "a material change" in said and "asked again" in said


def test_a_word_document_becomes_the_text_keeping_its_headings_lists_and_emphasis(
        setup, cli, smtp, tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Use of Social Media Policy", 1)
    document.add_heading("Privacy", 2)
    paragraph = document.add_paragraph("Keep your settings ")
    paragraph.add_run("high").italic = True
    paragraph.add_run(", always.")
    document.add_paragraph("Do not accept parents as friends.", style="List Bullet")
    document.add_paragraph("Do not post photographs of children.", style="List Bullet")
    document.save(tmp_path / "policy.docx")

    config = setup()
    _ok(cli("tick", "--at", at("2026-09-01 08:00").isoformat(), config=config))
    _ok(cli("policy", "version", "social-media", str(tmp_path / "policy.docx"), "--minor",
            "--note", "Kept in Word now", config=config))
    _ok(cli("policy", "approve", "social-media", "--name", "Jane Smith", "--role",
            "Chair of Governors", "--date", "2026-08-28", config=config))
    page = _page(config, link_in(smtp.inbox.to("amira@example.org")[0]))
    assert "<h3>Privacy</h3>" in page  # under the page's <h1>, the title, headings move down
    assert "Keep your settings <em>high</em>, always." in page
    assert "<li>Do not accept parents as friends.</li>" in page
    assert "<li>Do not post photographs of children.</li>" in page


def test_the_console_proposes_a_new_text_and_records_its_approval(admin, app, cli, console, smtp):
    from sqlalchemy import select

    from workflow.models import Event, Policy

    with app.extensions["signoff"].db.read() as session:
        policy_id = session.scalar(select(Policy.id).where(Policy.slug == "social-media"))
    fields = {**policy_fields(admin, policy_id), "text": NEW_TEXT}
    # A new text must say whether it is material, and what it changes.
    refused = post(admin, f"/admin/policies/{policy_id}", {**fields, "action": "preview"})
    assert refused.status_code == 400
    assert "Say whether the new text is a material or a minor change." in flat(
        refused.get_data(as_text=True))
    assert "Say what the new text changes: staff are shown it." in flat(
        refused.get_data(as_text=True))
    fields.update(change="minor", note="New section on photographs")
    preview, saved = save_policy(admin, f"/admin/policies/{policy_id}", fields)
    assert "The new text is proposed, not sent" in flat(preview.get_data(as_text=True))
    assert saved.status_code == 303
    page = flat(admin.get(saved.headers["Location"]).get_data(as_text=True))
    assert "Its new text is proposed: it reaches staff once approved." in page
    assert "proposed: waiting for approval" in page and "New section on photographs" in page
    link = link_in(smtp.inbox.to("amira@example.org")[0])
    assert "personal phone" not in _page(console, link)

    url = f"/admin/policies/{policy_id}/approve"
    refused = post(admin, url, {"name": "", "role": "Chair of Governors",
                                "approved_on": "2026-09-03"})
    assert refused.status_code == 400
    text = flat(refused.get_data(as_text=True))
    assert "Give the name of who approved it." in text
    assert "The date approved cannot be in the future." in text
    done = post(admin, url, {"name": "Jane Smith", "role": "Chair of Governors",
                             "approved_on": "2026-09-01", "minute": "12/3"})
    assert done.status_code == 303
    page = flat(admin.get(done.headers["Location"]).get_data(as_text=True))
    assert "This text is now in force" in page and "in force" in page
    assert "Jane Smith, Chair of Governors, 1 September 2026 (minute 12/3)" in page
    assert "Approved by Jane Smith, Chair of Governors, on 1 September 2026." in _page(
        console, link)
    with app.extensions["signoff"].db.read() as session:
        approved = session.scalars(select(Event).where(Event.kind == "version_approved")).one()
    assert approved.actor == "office@example.org" and approved.detail["in_force"] is True


def test_a_material_change_once_approved_asks_those_who_confirmed_again_and_shows_what_changed(
        setup, cli, smtp, tmp_path):
    """Amira and Ben confirmed the text of 1 September; Chloe has not yet. A material change is
    approved on 10 September: Amira and Ben are asked again in one email each, their page shows
    the note and the changed passages, their first confirmation stays in the evidence, and
    confirming again records the new text. Chloe's reminders go on as they were."""
    from sqlalchemy import select

    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Confirmation
    from workflow.policies import sha256

    config = setup()
    _ok(cli("tick", "--at", at("2026-09-01 08:00").isoformat(), config=config))
    first = {who: link_in(smtp.inbox.to(f"{who}@example.org")[0]) for who in ("amira", "ben")}
    for who, link in first.items():
        confirm_by_page(config, link, at("2026-09-02 10:00"))
    _ok(cli("tick", "--at", at("2026-09-08 08:00").isoformat(), config=config))  # Chloe's
    old_text = (config.parent / "policy.md").read_text()
    new_text = old_text.rstrip("\n") + (
        "\n\nNever take photographs of children on a personal phone.\n")
    (tmp_path / "new.md").write_text(new_text)
    _ok(cli("policy", "version", "social-media", str(tmp_path / "new.md"), "--material",
            "--note", "Photographs: never on a personal phone", config=config))
    with time_machine.travel(at("2026-09-10 09:00"), tick=False):
        said = _ok(cli("policy", "approve", "social-media", "--name", "Jane Smith", "--role",
                       "Chair of Governors", "--date", "2026-09-09", config=config))
    assert "2 who confirmed the older text this cycle are asked again" in said

    before = len(smtp.inbox)
    _ok(cli("tick", "--at", at("2026-09-10 09:05").isoformat(), config=config))
    again = {m["To"].addresses[0].addr_spec: m for m in smtp.inbox.messages[before:]}
    assert sorted(again) == ["amira@example.org", "ben@example.org"]
    text = again["amira@example.org"].get_body(("plain",)).get_content()
    assert "has changed since you confirmed it this year: Photographs: never on a personal phone" \
        in text
    page = _page(config, link_in(again["amira@example.org"]), "2026-09-10 10:00")
    changed = flat(page)
    assert "What changed on 10 September 2026" in changed
    assert "Added: Never take photographs of children on a personal phone." in changed
    assert "everyone is asked to read it and confirm again" in changed
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(_ok(cli(
        "report", "--format", "csv", "--at", at("2026-09-10 10:00").isoformat(),
        config=config))))}
    assert rows["amira@example.org"]["status"] == "pending"
    assert rows["amira@example.org"]["earlier_version"] == sha256(old_text)
    assert rows["amira@example.org"]["earlier_confirmed_at"].startswith("2026-09-02T10:00")
    assert rows["chloe@example.org"]["status"] == "pending"
    assert rows["chloe@example.org"]["earlier_version"] == ""

    confirm_by_page(config, link_in(again["amira@example.org"]), at("2026-09-10 10:05"))
    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            kept = session.scalars(select(Confirmation).order_by(Confirmation.id)).all()
            records = [(c.version_sha256, c.superseded_at is not None) for c in kept]
    finally:
        db.dispose()
    assert records == [(sha256(old_text), True), (sha256(old_text), True),
                       (sha256(new_text), False)]
    # Chloe's follow-ups go on from her first reminder; Ben's count from his new one; Amira,
    # who confirmed again, hears nothing more.
    for when, expected in (("2026-09-15 08:00", ["chloe@example.org"]),
                           ("2026-09-17 08:00", ["ben@example.org"])):
        before = len(smtp.inbox)
        _ok(cli("tick", "--at", at(when).isoformat(), config=config))
        assert sorted(m["To"].addresses[0].addr_spec
                      for m in smtp.inbox.messages[before:]) == expected, when


def test_the_console_takes_a_new_text_from_a_word_document(admin, app, smtp, tmp_path):
    """The office uploads the policy as the school keeps it, in Word: the form's box shows it as
    Markdown, headings and lists kept, ready to preview and save as a proposal."""
    import docx
    from sqlalchemy import select

    from workflow.models import Policy

    document = docx.Document()
    document.add_heading("Use of Social Media Policy", 1)
    document.add_heading("Photographs", 2)
    document.add_paragraph("Never on a personal phone.", style="List Bullet")
    document.save(tmp_path / "policy.docx")
    with app.extensions["signoff"].db.read() as session:
        policy_id = session.scalar(select(Policy.id).where(Policy.slug == "social-media"))
    fields = {**policy_fields(admin, policy_id), "change": "material",
              "note": "Photographs", "action": "preview",
              "upload": ((tmp_path / "policy.docx").open("rb"), "policy.docx")}
    preview = post(admin, f"/admin/policies/{policy_id}", fields,
                   content_type="multipart/form-data")
    assert preview.status_code == 200, preview.get_data(as_text=True)
    page = preview.get_data(as_text=True)
    assert "## Photographs" in page and "- Never on a personal phone" in page
    assert "The new text is proposed, not sent" in flat(page)
    broken = {**fields, "upload": (io.BytesIO(b"not a zip"), "policy.docx")}
    refused = post(admin, f"/admin/policies/{policy_id}", broken,
                   content_type="multipart/form-data")
    assert refused.status_code == 400
    assert "policy.docx could not be read as a Word document" in flat(
        refused.get_data(as_text=True))
