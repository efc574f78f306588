"""Several policies in a real browser: a person confirming two policies from one email on a phone;
the office manager adding a policy, changing its schedule and adding a closure in the console, each
previewed before it is saved; axe-core on every page. SQLite, against a real `signoff serve`;
skipped with the reason when Chromium is not installed."""

from __future__ import annotations

import re

import pytest

from browser_helpers import (accessible, browser, fits, page,  # noqa: F401
                             phone_page, require_browser, serve,
                             sign_in_with_the_keyboard)
from helpers import CODE_OF_CONDUCT, parts

expect = require_browser()

ROSTER = """\
name,email,role,groups
Amira Khan,amira@example.org,Practitioner,practitioners
Ben Lewis,ben@example.org,Caretaker,site
Chloe Evans,chloe@example.org,Teacher,practitioners
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two policies for everyone: the first tick sends each person one email naming both."""
    with serve(tmp_path_factory.mktemp("policies"), ROSTER, CODE_OF_CONDUCT) as running:
        yield running


def test_a_person_confirms_two_policies_from_one_email_on_a_phone(browser, site):
    email, = site.inbox.to("amira@example.org")
    text, _ = parts(email)
    links = [site.local(link) for link in re.findall(r"https?://\S+/c/[A-Za-z0-9_-]{43}", text)]
    assert len(links) == 2
    with phone_page(browser) as phone:
        titles = ("Use of Social Media Policy", "Staff Code of Conduct")
        for link, title, waiting in zip(links, titles, (titles[1], None)):
            phone.goto(link)
            expect(phone.get_by_role("heading", level=1).first).to_have_text(title)
            fits(phone)
            accessible(phone)
            for box in phone.get_by_role("checkbox").all():
                box.tap()
            phone.get_by_role("button", name="Confirm I have read").tap()
            expect(phone.get_by_role("heading", level=1)).to_have_text("Thank you, Amira")
            expect(phone.get_by_role("status")).to_contain_text(f"You confirmed the {title} on")
            if waiting:  # the other is named as still to do, its link in the same email
                expect(phone.get_by_role("heading", level=2, name="Still waiting for you")) \
                    .to_be_visible()
                expect(phone.get_by_role("listitem").filter(has_text=waiting)).to_be_visible()
            else:
                expect(phone.get_by_text("You do not need to do anything else")).to_be_visible()
            fits(phone)
            accessible(phone)
        # Each was recorded on its own: the first link still shows its own confirmation.
        phone.goto(links[0])
        expect(phone.get_by_role("status")).to_contain_text(f"You confirmed the {titles[0]} on")


def test_the_office_adds_a_policy_for_one_group_previewed_before_it_is_saved(page, site):
    sign_in_with_the_keyboard(page, site)
    page.get_by_role("link", name="Policies", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Policies")).to_be_visible()
    accessible(page)
    page.get_by_role("link", name="Add a policy").click()
    accessible(page)
    page.get_by_role("button", name="Preview the change").click()  # nothing filled in yet
    expect(page.get_by_text("Give the policy a title.")).to_be_visible()
    accessible(page)
    page.get_by_label("Title").fill("Lone Working Policy")
    page.get_by_label("The policy's text (Markdown)").fill(
        "# Lone Working Policy\n\nTell the office before you work alone.\n")
    page.get_by_label("Statements each person ticks, one a line").fill(
        "I tell the office before I work alone.")
    page.get_by_label("Who it is for (optional)").fill("site")
    page.get_by_label("Follow-ups, days after the first reminder").fill("3")
    page.get_by_role("button", name="Preview the change").click()
    preview = page.locator("#preview")
    expect(preview).to_contain_text("Saving this sends 1 first reminder")
    accessible(page)
    page.get_by_role("button", name="Save, as previewed").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the Lone Working Policy.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit Lone Working Policy")
    accessible(page)
    page.get_by_role("link", name="Policies", exact=True).click()
    row = page.get_by_role("row").filter(has_text="Lone Working Policy")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("0 of 1")  # Ben, the site group's one member


def test_the_office_changes_a_policys_schedule_and_sees_the_emails_it_moves(page, site):
    sign_in_with_the_keyboard(page, site)
    page.get_by_role("link", name="Policies", exact=True).click()
    page.get_by_role("link", name="Staff Code of Conduct").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit Staff Code of Conduct")
    accessible(page)
    page.get_by_label("Follow-ups, days after the first reminder").fill("none")
    page.get_by_role("button", name="Preview the change").click()
    expect(page.locator("#preview")).to_contain_text("Saving this no longer sends")
    accessible(page)
    page.get_by_role("button", name="Save, as previewed").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the Staff Code of Conduct.")
    page.get_by_role("link", name="Schedule", exact=True).click()
    expect(page.get_by_text("no follow-ups", exact=False).first).to_be_visible()
    accessible(page)
    fits(page)


def test_the_office_adds_a_closure_and_removes_it(page, site):
    sign_in_with_the_keyboard(page, site)
    page.get_by_role("link", name="Policies", exact=True).click()
    page.get_by_role("link", name="Closures").click()
    expect(page.get_by_role("heading", level=1, name="Closures")).to_be_visible()
    accessible(page)
    page.get_by_label("Name").fill("Christmas holiday")
    page.get_by_label("First day closed").fill("2026-12-19")
    page.get_by_label("Last day closed").fill("2027-01-04")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Check what saving this does")).to_be_visible()
    accessible(page)
    page.get_by_role("button", name="Save, as previewed").click()
    expect(page.get_by_role("status")).to_contain_text("Added the closure Christmas holiday.")
    expect(page.get_by_text("Christmas holiday: Sat 19 Dec 2026 to Mon 4 Jan 2027")).to_be_visible()
    accessible(page)
    page.get_by_role("button", name="Remove Christmas holiday").click()
    expect(page.get_by_role("heading", name="Check what saving this does")).to_be_visible()
    page.get_by_role("button", name="Remove Christmas holiday, as previewed").click()
    expect(page.get_by_role("status")).to_contain_text("Removed the closure Christmas holiday.")
    expect(page.get_by_text("None yet.")).to_be_visible()
