""""I can't confirm this" in a real browser: a person says on their phone which part they cannot
confirm and why; the head teacher's email leads to their page in the console, where the decision
is recorded. axe-core on every page. SQLite, against a real `signoff serve`; skipped with the
reason when Chromium is not installed."""

from __future__ import annotations

import re

import pytest

from browser_helpers import (accessible, browser, fits, page,  # noqa: F401
                             phone_page, require_browser, serve,
                             sign_in_with_the_keyboard)
from conftest import ROSTER, run_signoff
from helpers import parts

expect = require_browser()

REASON = "My sister's child is at the nursery and she is my friend online."


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("decline"), ROSTER) as running:
        yield running


def test_someone_who_cannot_confirm_tells_the_head_teacher_who_decides_in_the_console(
        browser, page, site):
    with phone_page(browser) as phone:
        phone.goto(site.link_for("amira@example.org"))
        phone.get_by_text("I can’t confirm this", exact=True).tap()
        button = phone.get_by_role("button", name="Tell the head teacher I can’t confirm this")
        expect(button).to_be_visible()
        fits(phone)
        accessible(phone)
        button.tap()  # no reason given yet
        expect(phone.get_by_text("Please say why, so that the head teacher can help.")) \
            .to_be_visible()
        reason = phone.get_by_label("Why not? The head teacher reads this.")
        expect(reason).to_be_focused()
        accessible(phone)
        phone.get_by_role("radio", name="No child or parent is my online friend or follower.") \
            .check()
        reason.fill(REASON)
        phone.get_by_role("button", name="Tell the head teacher I can’t confirm this").tap()
        notice = phone.get_by_role("status")
        expect(notice).to_contain_text("You told us you cannot confirm this")
        expect(notice).to_contain_text("“No child or parent is my online friend or follower.”")
        # They can still confirm; they are not offered to decline twice.
        expect(phone.get_by_role("button", name="Confirm I have read")).to_be_visible()
        expect(phone.get_by_text("I can’t confirm this", exact=True)).to_have_count(0)
        fits(phone)
        accessible(phone)

    done = run_signoff("tick", config=site.config)
    assert done.returncode == 0, done.stderr
    email, = site.inbox.to("head@example.org")
    assert email["Subject"] == "Amira Khan cannot confirm the Use of Social Media Policy"
    person = re.search(r"https?://\S+/admin/people/\d+", parts(email)[0]).group(0)

    sign_in_with_the_keyboard(page, site)
    waiting = page.get_by_role("region", name="Cannot confirm: waiting for a decision")
    expect(waiting).to_contain_text("Amira Khan")
    accessible(page)
    page.goto(site.local(person))
    expect(page.get_by_role("heading", level=3,
                            name="Says they cannot confirm: waiting for a decision")).to_be_visible()
    expect(page.get_by_text(REASON, exact=True)).to_be_visible()
    accessible(page)
    page.get_by_role("button", name="Record the decision").click()
    expect(page.get_by_text("Choose what happens now.")).to_be_visible()
    accessible(page)
    page.get_by_label("Ask them to confirm again").check()
    page.get_by_label("What was decided, and by whom").fill(
        "Spoke with Amira: her sister is not a parent here, so the statement holds.")
    page.get_by_role("button", name="Record the decision").click()
    expect(page.get_by_text("Amira Khan is asked to confirm the Use of Social Media Policy "
                            "again")).to_be_visible()
    expect(page.get_by_role("heading", level=3, name="Said they could not confirm")) \
        .to_be_visible()
    accessible(page)
