"""A policy's life in a real browser: the office proposes a new text as a material change, records
the governors' approval, and the person who had confirmed is asked again and shown on their phone
what changed. axe-core on every page. SQLite, against a real `signoff serve`; skipped with the
reason when Chromium is not installed."""

from __future__ import annotations

import re
import sqlite3

import pytest

from browser_helpers import (accessible, browser, fits, page,  # noqa: F401
                             phone_page, require_browser, serve,
                             sign_in_with_the_keyboard)
from conftest import ROSTER, link_in, run_signoff

expect = require_browser()

ADDED = "Never take photographs of children on a personal phone."


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("versions"), ROSTER) as running:
        yield running


def _confirm(phone) -> None:
    for box in phone.get_by_role("checkbox").all():
        box.tap()
    phone.get_by_role("button", name="Confirm I have read").tap()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Thank you, Amira")


def test_a_material_change_is_proposed_approved_and_asked_again_with_what_changed(
        browser, page, site):
    with phone_page(browser) as phone:
        phone.goto(site.link_for("amira@example.org"))
        _confirm(phone)

    sign_in_with_the_keyboard(page, site)
    page.get_by_role("link", name="Policies", exact=True).click()
    page.get_by_role("link", name="Use of Social Media Policy").click()
    text = page.get_by_label("The policy's text (Markdown)")
    text.fill(text.input_value().rstrip() + "\n\n" + ADDED + "\n")
    page.get_by_role("button", name="Preview the change").click()  # material or minor?
    expect(page.get_by_text("Say whether the new text is a material or a minor change.")) \
        .to_be_visible()
    accessible(page)
    page.get_by_label(re.compile("^Material")).check()
    page.get_by_label("What the new text changes").fill("Photographs: never on a personal phone")
    page.get_by_role("button", name="Preview the change").click()
    expect(page.locator("#preview")).to_contain_text("The new text is proposed, not sent")
    accessible(page)
    page.get_by_role("button", name="Save, as previewed").click()
    expect(page.get_by_role("status")).to_contain_text("Its new text is proposed")
    expect(page.get_by_role("heading", level=3, name=re.compile("proposed: waiting for approval"))) \
        .to_be_visible()
    accessible(page)
    page.get_by_label("Approved by (name)").fill("Jane Smith")
    page.get_by_label("Their role").fill("Chair of Governors")
    page.get_by_label("Date approved").fill("2026-11-14")
    page.get_by_label("Minute reference (optional)").fill("FGB 12/3")
    page.get_by_role("button", name="Record the approval").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("This text is now in force")
    expect(status).to_contain_text("1 person who confirmed the older text this cycle are asked "
                                   "again")
    accessible(page)
    fits(page)

    # She had today's email (her first reminder): being asked again waits for her next day.
    done = run_signoff("tick", config=site.config)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(site.config.parent / "signoff.db") as db:
        held, = db.execute("SELECT next_attempt_at FROM outbox WHERE key LIKE '%:r1:reminder' "
                           "AND status = 'pending'").fetchone()
    db.close()
    done = run_signoff("tick", "--at", f"{held[:19].replace(' ', 'T')}+00:00",
                       config=site.config)
    assert done.returncode == 0, done.stderr
    again = site.inbox.to("amira@example.org")[-1]
    assert "has changed since you confirmed it" in again.get_body(("plain",)).get_content()
    with phone_page(browser) as phone:
        phone.goto(site.local(link_in(again)))
        changed = phone.get_by_role("region", name=re.compile("What changed on"))
        expect(changed).to_contain_text("Photographs: never on a personal phone")
        expect(changed.locator("ins")).to_contain_text(ADDED)
        expect(phone.get_by_text("Approved by Jane Smith, Chair of Governors, on 14 November "
                                 "2026.")).to_be_visible()
        fits(phone)
        accessible(phone)
        _confirm(phone)
        accessible(phone)
