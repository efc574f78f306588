"""Helpers for the browser tests: a real `signoff serve` on a free port with its own SMTP server,
Debian's Chromium driven by Playwright, axe-core, and what a phone sees. Imported by the modules in
tests/browser/, each of which skips itself where Chromium is not installed."""

from __future__ import annotations

import sqlite3
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from admin_helpers import ADMIN, PASSWORD
from conftest import SIGNOFF, Inbox, _Handler, free_port, link_in, run_signoff, write_config

CHROMIUM = "/usr/bin/chromium"


def require_browser():
    """Skip the calling test module, with the reason, where Chromium, Playwright or axe-core is
    missing; else Playwright's `expect`. Call it at the module's top level."""
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (`make test` installs it with "
                    "apt when run as root)", allow_module_level=True)
    playwright_api = pytest.importorskip("playwright.sync_api",
                                         reason="playwright is not installed")
    pytest.importorskip("axe_playwright_python.sync_playwright",
                        reason="axe-playwright-python is not installed")
    return playwright_api.expect
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


class Site:
    def __init__(self, base: str, inbox: Inbox, config: Path):
        self.base, self.inbox, self.config = base, inbox, config

    def link_for(self, email: str) -> str:
        """The person's emailed link, pointed at the test server instead of the configured host."""
        return self.local(link_in(self.inbox.to(email)[0]))

    def local(self, link: str) -> str:
        return link.replace("http://signoff.test", self.base)


@contextmanager
def serve(folder: Path, roster: str, extra: str = ""):
    """A real server: config (with `extra` TOML), roster, an admin, the first tick's emails."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    smtp_port = free_port()
    mail = Controller(_Handler(inbox), hostname="127.0.0.1", port=smtp_port)
    mail.start()
    config = write_config(folder, f"sqlite:///{folder / 'signoff.db'}", smtp_port, extra=extra)
    (folder / "staff.csv").write_text(roster)
    for args, stdin in ((["init"], None), (["staff", "import", str(folder / "staff.csv")], None),
                        (["admin", "add", ADMIN, "--password-stdin"], PASSWORD + "\n"),
                        (["tick"], None)):
        done = run_signoff(*args, config=config, input=stdin)
        assert done.returncode == 0, done.stderr
    with sqlite3.connect(folder / "signoff.db") as db:  # greeted by the name she goes by
        db.execute("UPDATE staff SET first_name = 'Amira' WHERE email = 'amira@example.org'")
    db.close()
    port = free_port()
    server = subprocess.Popen([*SIGNOFF, "--config", str(config), "serve", "--port", str(port)],
                              cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/healthz", server)
        yield Site(base, inbox, config)
    finally:
        server.terminate()
        server.wait(timeout=10)
        mail.stop()


def _wait_for(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"signoff serve exited: {server.stdout.read().decode()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within 30 s")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1024, "height": 768}, accept_downloads=True)
    yield context.new_page()
    context.close()


def accessible(page) -> None:
    """axe-core on the page as shown: no serious or critical violations."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{page.url}\n{results.generate_report()}"


def fits(page) -> None:
    """Nothing wider than the screen: no sideways scrolling on a phone."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


def sign_in_with_the_keyboard(page, site) -> None:
    from playwright.sync_api import expect

    page.goto(f"{site.base}/admin/")
    expect(page).to_have_url(f"{site.base}/admin/login?next=/admin/")
    accessible(page)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Email address").focus()
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Dashboard")).to_be_visible()


@contextmanager
def phone_page(browser):
    """A page in a phone-sized browser: 360 by 740, touch."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    try:
        yield context.new_page()
    finally:
        context.close()
