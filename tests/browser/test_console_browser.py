"""The console and the confirmation page in a real browser: Debian's Chromium driven by Playwright
against a real `signoff serve` on a free port, with axe-core checking every page for serious or
critical accessibility problems. SQLite; skipped with the reason when Chromium is not installed."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from admin_helpers import ADMIN
from browser_helpers import (accessible, browser, fits, page,  # noqa: F401
                             phone_page, require_browser, serve,
                             sign_in_with_the_keyboard)

expect = require_browser()

ROSTER = """\
name,email,role,start_date,active
Amira Khan,amira@example.org,Practitioner,,yes
Ben Lewis,ben@example.org,Room Leader,,yes
Chloe Evans,chloe@example.org,Teacher,,yes
Dan Ode,dan@example.org,Cook,,yes
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One real server for the module: config, roster, an admin, the first tick's emails."""
    with serve(tmp_path_factory.mktemp("browser"), ROSTER) as running:
        yield running


def test_staff_member_confirms_on_a_phone(browser, site):
    with phone_page(browser) as phone:
        phone.goto(site.link_for("amira@example.org"))
        expect(phone.get_by_role("heading", level=1).first).to_have_text("Use of Social Media Policy")
        expect(phone.get_by_text("Hello Amira.")).to_be_visible()
        fits(phone)
        accessible(phone)
        phone.get_by_role("button", name="Confirm I have read").tap()
        expect(phone.get_by_text("2 of 2 not ticked yet")).to_be_visible()
        for box in phone.get_by_role("checkbox").all():
            box.tap()
        phone.get_by_role("button", name="Confirm I have read").tap()
        expect(phone.get_by_role("heading", level=1)).to_have_text("Thank you, Amira")
        fits(phone)
        accessible(phone)


def test_a_missed_box_on_a_phone_takes_the_focus_by_the_boxes(browser, site):
    with phone_page(browser) as phone:
        phone.goto(site.link_for("dan@example.org"))
        boxes = phone.get_by_role("checkbox")
        boxes.first.tap()
        phone.get_by_role("button", name="Confirm I have read").tap()
        expect(phone.get_by_text("1 of 2 not ticked yet")).to_be_in_viewport()
        expect(boxes.nth(1)).to_be_focused()
        expect(boxes.nth(1)).to_have_attribute("aria-invalid", "true")
        expect(boxes.first).to_be_checked()
        expect(boxes.nth(1)).not_to_be_checked()
        fits(phone)
        accessible(phone)


def test_admin_signs_in_and_sees_the_dashboard(page, site):
    sign_in_with_the_keyboard(page, site)
    expect(page.get_by_text("Use of Social Media Policy:")).to_be_visible()
    expect(page.locator("progress")).to_have_count(1)
    accessible(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1, name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")


def test_wrong_password_in_the_browser(page, site):
    page.goto(f"{site.base}/admin/login")
    page.get_by_label("Email address").fill(ADMIN)
    page.get_by_label("Password").fill("certainly not it")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Email or password is not right.")
    accessible(page)


def test_admin_exempts_someone_and_records_a_paper_sign_off(page, site):
    sign_in_with_the_keyboard(page, site)
    page.get_by_role("link", name="People", exact=True).click()
    page.get_by_label("Search by name, email or role").fill("ben")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name="Ben Lewis").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ben Lewis")
    accessible(page)

    exempt = page.locator("form", has=page.get_by_role("button", name="Exempt for this cycle"))
    exempt.get_by_role("button").click()  # no reason given yet
    expect(page.get_by_text("Give a reason: it is kept with the record.")).to_be_visible()
    accessible(page)
    exempt = page.locator("form", has=page.get_by_role("button", name="Exempt for this cycle"))
    exempt.get_by_label("Reason").fill("Long-term sick leave")
    exempt.get_by_role("button").click()
    expect(page.get_by_role("status")).to_contain_text("Ben Lewis is exempt from this cycle")
    expect(page.get_by_role("heading", level=2, name="Use of Social Media Policy")).to_contain_text("exempt")

    page.get_by_role("link", name="People", exact=True).click()
    page.get_by_role("link", name="Chloe Evans").click()
    paper = page.locator("form", has=page.get_by_role("button", name="Record paper sign-off"))
    yesterday = dt.date.today() - dt.timedelta(days=1)  # the server's clock is the real one
    paper.get_by_label("Date signed on the form").fill(yesterday.isoformat())
    paper.get_by_label("Where the signed form is kept").fill("Staff file, office cabinet")
    paper.get_by_label("Note (optional)").fill("Signed the paper copy in the office")
    paper.get_by_role("button").click()
    expect(page.get_by_role("status")).to_have_text("Paper sign-off recorded for Chloe Evans.")
    expect(page.get_by_text(f"paper sign-off recorded by {ADMIN}")).to_be_visible()
    expect(page.get_by_text("Staff file, office cabinet", exact=True)).to_be_visible()
    accessible(page)


def test_admin_exports_the_evidence(page, site, tmp_path):
    sign_in_with_the_keyboard(page, site)
    page.get_by_role("link", name="Evidence", exact=True).click()
    accessible(page)
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("signoff-social-media-")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert {r["email"] for r in rows} >= {"amira@example.org", "ben@example.org"}
    assert set(rows[0]) >= {"name", "email", "status", "confirmed_at", "method", "exempt_reason"}

    page.get_by_role("link", name="View").first.click()
    expect(page.get_by_role("heading", level=2, name="Policy version")).to_be_visible()
    accessible(page)


def test_every_other_admin_page_is_accessible_and_fits_a_small_screen(browser, site, tmp_path):
    context = browser.new_context(viewport={"width": 320, "height": 640})
    page = context.new_page()
    try:
        sign_in_with_the_keyboard(page, site)
        for path in ("/admin/", "/admin/people", "/admin/people?sort=status", "/admin/people/new",
                     "/admin/schedule", "/admin/evidence"):
            page.goto(site.base + path)
            accessible(page)
            fits(page)
        page.goto(f"{site.base}/admin/people")
        page.get_by_role("link", name="Dan Ode").click()
        accessible(page)
        page.get_by_role("link", name="Edit details").click()
        accessible(page)

        page.goto(f"{site.base}/admin/people")
        roster = tmp_path / "roster.csv"
        roster.write_text("name,email,role\nDan Ode,dan@example.org,Head Cook\n"
                          "Eve Parr,eve@example.org,Teacher\n")
        page.get_by_label("Roster CSV file").set_input_files(roster)
        page.get_by_role("button", name="Preview changes").click()
        expect(page.get_by_text("1 added")).to_be_visible()
        accessible(page)
        page.get_by_role("button", name="Apply these changes").click()
        expect(page.get_by_role("status")).to_contain_text("1 added, 1 updated")

        page.goto(f"{site.base}/admin/schedule")
        page.get_by_role("button", name="Send a test email").click()
        expect(page.get_by_role("status")).to_contain_text("A sample reminder was sent")
        assert site.inbox.to(ADMIN)
        accessible(page)
    finally:
        context.close()
