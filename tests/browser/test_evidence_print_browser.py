"""A cycle's evidence to take away, in a real browser: from the evidence page, the printable page
(axe-core on it), printed by Chromium itself to A4 with numbered pages, and the PDF downloaded.
SQLite, against a real `signoff serve`; skipped with the reason when Chromium is not installed,
the download when WeasyPrint cannot load."""

from __future__ import annotations

import io
import re

import pytest

from browser_helpers import (accessible, browser, page, require_browser,  # noqa: F401
                             serve, sign_in_with_the_keyboard)
from conftest import ROSTER

expect = require_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("evidence"), ROSTER) as running:
        yield running


def test_the_evidence_prints_from_the_browser_and_downloads_as_a_pdf(page, site, tmp_path):
    from pypdf import PdfReader

    from workflow import pdf

    sign_in_with_the_keyboard(page, site)
    page.get_by_role("link", name="Evidence", exact=True).click()
    page.get_by_role("link", name="View").first.click()
    page.get_by_role("link", name="everyone on one printable page").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        re.compile(r"Use of Social Media Policy: \d{4} review"))
    expect(page.get_by_text("Evidence for an inspector: everyone this cycle lists (3 people)")) \
        .to_be_visible()
    expect(page.get_by_role("heading", level=2, name="Policy version")).to_be_visible()
    accessible(page)

    # The browser's own Print: A4 (print.css), every page numbered, no console navigation.
    printed = PdfReader(io.BytesIO(page.pdf(prefer_css_page_size=True)))
    assert [round(float(v)) for v in printed.pages[0].mediabox[2:]] == [595, 842]
    text = " ".join(printed.pages[0].extract_text().split())
    assert "Page 1 of 1" in text and "Amira Khan" in text and "Sign out" not in text

    if pdf.missing():
        pytest.skip(f"WeasyPrint cannot load here ({pdf.missing()})")
    with page.expect_download() as info:
        page.get_by_role("link", name="download it as a PDF").click()
    download = info.value
    assert re.fullmatch(r"signoff-social-media-\d{4}-evidence\.pdf", download.suggested_filename)
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert target.read_bytes().startswith(b"%PDF-")
    assert "Amira Khan" in PdfReader(target).pages[0].extract_text()
