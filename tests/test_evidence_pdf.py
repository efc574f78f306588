"""Evidence an inspector can take away, on both databases: a cycle's printable page lists everyone
it lists on one page (not 200 a page), with the policy text, each person's status, method, time
and version, each exemption with its reason and who granted it, and each "I can't confirm this"
with how it was resolved; the PDF is that page as a download. Both are for a signed-in admin of
the setting only. Where WeasyPrint cannot load (no Pango), the PDF tests are skipped, with the
reason, and the PDF link leads to the printable page."""

from __future__ import annotations

import hashlib
import html
import io
import re

import pytest
from sqlalchemy import select

from admin_helpers import ADMIN, PASSWORD, admin, app, clock, post, staff_id  # noqa: F401
from conftest import ROOT, ROSTER, at, link_in
from helpers import confirm_by_page, decline_by_page, flat

REASON = "My sister's child is at the nursery and she is my friend on Facebook."
STATEMENT = "No child or parent is my online friend or follower."
TEXT = hashlib.sha256((ROOT / "policies" / "social-media.md").read_bytes()).hexdigest()
OTHERS = 250  # on the roster, not asked yet: with the four asked, two pages of 200
LAST = f"Person {OTHERS:03}"


def require_weasyprint():
    from workflow import pdf

    if pdf.missing():
        pytest.skip(f"WeasyPrint cannot load here ({pdf.missing()}): `make test` installs "
                    "Debian's Pango when run as root")


@pytest.fixture
def console(setup, cli):
    """The setting with Dan on the roster too (four people the first tick asks), an admin."""
    config = setup(ROSTER + "Dan Okafor,dan@example.org,Cook,,yes\n")
    result = cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    return config


@pytest.fixture
def story(admin, app, cli, console, smtp):
    """Amira said she could not confirm, then confirmed online; Ben could not, and was excused;
    Chloe signed on paper; Dan cannot, and waits for a decision; 250 more joined the roster
    since the first reminders. Returns the cycle's id."""
    from workflow.models import Cycle

    def link(who):
        return link_in(smtp.inbox.to(f"{who}@example.org")[0])

    for who in ("amira", "ben", "dan"):
        status, _ = decline_by_page(console, link(who), at("2026-09-02 09:00"), REASON,
                                    statement="1")
        assert status == 303
    confirm_by_page(console, link("amira"), at("2026-09-02 09:30"))
    done = post(admin, f"/admin/people/{staff_id(app, 'ben@example.org')}/social-media/resolve",
                {"outcome": "excused", "note": "Agreed with the chair of governors."},
                prefix="social-media-resolve")
    assert done.status_code == 303
    done = post(admin, f"/admin/people/{staff_id(app, 'chloe@example.org')}/social-media/paper",
                {"signed_on": "2026-09-01", "kept": "Staff file", "note": "Signed in the office"},
                prefix="social-media-paper")
    assert done.status_code == 303
    roster = console.parent / "joined.csv"
    roster.write_text("name,email\n" + "".join(f"Person {i:03},person{i:03}@example.org\n"
                                               for i in range(1, OTHERS + 1)))
    result = cli("staff", "import", str(roster), config=console)
    assert result.exit_code == 0, result.output
    with app.extensions["signoff"].db.read() as session:
        return session.scalar(select(Cycle.id))


def test_the_printable_page_has_everyone_with_their_evidence(admin, story):
    paged = html.unescape(admin.get(f"/admin/evidence/{story}").get_data(as_text=True))
    assert "The 254 people are listed 200 a page" in paged and LAST not in paged
    assert f'href="/admin/evidence/{story}/print"' in paged
    assert f'href="/admin/evidence/{story}/evidence.pdf"' in paged

    answer = admin.get(f"/admin/evidence/{story}/print")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    text = html.unescape(flat(page))
    assert "print.css" in page and 'aria-label="Pages of people"' not in page
    # Who, what and when it was produced.
    assert "Test Nursery Use of Social Media Policy: 2026 review" in text
    assert ("everyone this cycle lists (254 people). Produced Wed 2 Sep 2026 10:00 by "
            f"{ADMIN}.") in text
    assert "2 confirmed, 1 exempt, 251 not confirmed (1 cannot confirm)." in text
    # The text the cycle asked about, and the version each confirmed.
    assert f"This text in force when the cycle opened; in force now SHA-256 {TEXT}" in text
    # Amira, online, after saying she could not; Chloe, on paper.
    assert re.search(rf"Amira Khan Said they could not confirm “{STATEMENT}” on Wed 2 Sep 2026 "
                     rf"09:00 : {re.escape(REASON)} Then confirmed Wed 2 Sep 2026 09:30 "
                     rf"amira@example.org Wed 2 Sep 2026 09:30 self \(online\) {TEXT[:12]}", text)
    assert (f"Chloe Evans chloe@example.org Wed 2 Sep 2026 10:00 paper, recorded by {ADMIN}, "
            f"signed 1 Sep 2026, kept in Staff file: Signed in the office {TEXT[:12]}") in text
    # Ben, excused: the reason, who granted it, and the decline it resolved.
    exemptions = text[text.index("Exemptions"):text.index("Cannot confirm: waiting")]
    assert (f"Excused Wed 2 Sep 2026 10:00 by {ADMIN}: Agreed with the chair of governors. "
            f"ben@example.org Wed 2 Sep 2026 10:00 Could not confirm: {REASON} — Agreed with "
            f"the chair of governors. {ADMIN}") in exemptions
    # Dan, waiting for a decision; and everyone else, to the last name.
    waiting = text[text.index("Cannot confirm: waiting"):text.index("Not confirmed Person")]
    assert f"Dan Okafor <dan@example.org> Said they could not confirm “{STATEMENT}”" in waiting
    assert waiting.endswith(f"{REASON} ")
    for i in (1, 197, OTHERS):
        assert f"Person {i:03} <person{i:03}@example.org> (not asked yet)" in text


@pytest.mark.slow
def test_the_pdf_is_the_printable_page_as_a_download(admin, story):
    require_weasyprint()
    from pypdf import PdfReader

    answer = admin.get(f"/admin/evidence/{story}/evidence.pdf")
    assert answer.status_code == 200 and answer.mimetype == "application/pdf"
    assert answer.headers["Content-Disposition"] == (
        'attachment; filename="signoff-social-media-2026-evidence.pdf"')
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.data.startswith(b"%PDF-")
    pdf = PdfReader(io.BytesIO(answer.data))
    pages = [" ".join(p.extract_text().split()) for p in pdf.pages]
    every = " ".join(pages)
    assert len(pages) > 1
    for wanted in ("Amira Khan", "Chloe Evans", REASON, "Agreed with the chair of governors.",
                   LAST, TEXT[:12], f"by {ADMIN}"):
        assert wanted in every, wanted
    # On A4, from print.css: each page's foot names the setting and the policy, and numbers it;
    # the console's navigation is not on paper.
    assert [round(float(v)) for v in pdf.pages[0].mediabox[2:]] == [595, 842]
    for n, page in enumerate(pages, 1):
        assert f"Page {n} of {len(pages)}" in page
        assert "Test Nursery · Use of Social Media Policy: 2026 review" in page
    assert "Sign out" not in every and "Download it as a PDF" not in every.lower()


def test_a_cycle_too_large_for_a_pdf_here_leads_to_the_printable_page_saying_so(admin, story,
                                                                              monkeypatch):
    """Above PDF_MAX people a PDF takes minutes in the request (3 minutes and 1.9 GB at 50,000):
    the link is not offered, and the address says to print the page to PDF. The limit is made
    small here rather than the roster large."""
    from workflow.admin import evidence

    monkeypatch.setattr(evidence, "PDF_MAX", 250)
    page = flat(admin.get(f"/admin/evidence/{story}").get_data(as_text=True))
    assert "download it as a PDF" not in page and "made here for up to 250 people" in page
    answer = admin.get(f"/admin/evidence/{story}/evidence.pdf")
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/admin/evidence/{story}/print")
    shown = flat(admin.get(answer.headers["Location"]).get_data(as_text=True))
    assert "This cycle lists 254 people: a PDF of more than 250 takes minutes" in shown


def _cycle_id(app) -> int:
    from workflow.models import Cycle

    with app.extensions["signoff"].db.read() as session:
        return session.scalar(select(Cycle.id))


def test_evidence_to_print_is_for_a_signed_in_admin_of_the_setting(admin, app):
    from workflow.models import Cycle, Policy, Setting

    story = _cycle_id(app)

    for path in ("print", "evidence.pdf"):
        answer = app.test_client().get(f"/admin/evidence/{story}/{path}")
        assert answer.status_code in (302, 303)
        assert "/admin/login" in answer.headers["Location"]
        assert admin.get(f"/admin/evidence/9999/{path}").status_code == 404
    # Another setting's cycle in the same database is not shown here, as a page or a PDF.
    with app.extensions["signoff"].db.write() as session:
        other = Setting(name="Other Nursery", timezone="Europe/London", schedule={})
        session.add(other)
        session.flush()
        policy = Policy(setting_id=other.id, slug="fire-safety", title="Fire Safety Procedure",
                        schedule={}, state="active", position=0)
        session.add(policy)
        session.flush()
        cycle = Cycle(policy_id=policy.id, year=2026, opens_at=at("2026-09-01 08:00"),
                      created_at=at("2026-09-01 08:00"))
        session.add(cycle)
        session.flush()
        theirs = cycle.id
    for path in ("print", "evidence.pdf"):
        assert admin.get(f"/admin/evidence/{theirs}/{path}").status_code == 404


def test_where_weasyprint_cannot_load_the_pdf_link_leads_to_the_printable_page(request, caplog):
    from workflow import pdf

    if not pdf.missing():
        pytest.skip("WeasyPrint loads here: the PDF is made (the test above)")
    admin, story = request.getfixturevalue("admin"), request.getfixturevalue("story")
    answer = admin.get(f"/admin/evidence/{story}/evidence.pdf")
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/admin/evidence/{story}/print")
    page = html.unescape(flat(admin.get(answer.headers["Location"]).get_data(as_text=True)))
    assert "This server cannot make PDFs" in page and "use your browser's Print command" in page
    [line] = [r.getMessage() for r in caplog.records if "evidence PDF" in r.getMessage()]
    assert "\n" not in line and "WeasyPrint cannot load" in line
