"""`signoff demo` as a newcomer meets it, as a real subprocess: the reminders reach the mail catcher,
a reminder's link opens the confirmation page, one Ctrl-C stops everything, a second run reuses the
folder, and a busy port is one clear line."""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import SIGNOFF, free_port

pytestmark = pytest.mark.slow  # each starts signoff or another program as a process

ACTIVE = {"amira.khan@example.org", "ben.lewis@example.org", "chloe.evans@example.org",
          "daniel.okafor@example.org", "ellie.morgan@example.org", "farah.ali@example.org"}
ENTRY = re.compile(r'<a href="/m/([^"]+)">\s*<span class="subject">([^<]*)</span>\s*'
                   r'<span class="meta"><span class="to">([^<]*)</span>')


class Demo:
    def __init__(self, folder: Path, port: int, mail_port: int):
        self.folder, self.port, self.mail_port = folder, port, mail_port
        self.mail_url = f"http://127.0.0.1:{mail_port + 1}"
        self.out = folder.parent / f"demo-{time.monotonic_ns()}.out"
        with self.out.open("w") as out:
            self.process = subprocess.Popen(
                [*SIGNOFF, "demo", "--dir", str(folder), "--port", str(port),
                 "--mail-port", str(mail_port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=folder.parent, text=True)
        self.children: list[int] = []

    def output(self) -> str:
        return self.out.read_text()

    def mail(self) -> list[tuple[str, str, str]]:
        """(id, subject, to) of every email on the catcher's page, newest first."""
        _, _, page = get(self.mail_url + "/")
        return [(id, html.unescape(subject), html.unescape(to))
                for id, subject, to in ENTRY.findall(page)]

    def reminders(self) -> dict[str, str]:
        """Address -> message id of each first reminder caught."""
        found = {}
        for id, subject, to in self.mail():
            if subject.startswith("Please re-read"):
                found[re.search(r"<([^>]+)>", to).group(1)] = id
        return found

    def wait_for(self, condition, what: str, timeout: float = 40):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"demo exited early:\n{self.output()}"
            try:
                value = condition()
            except OSError:
                value = None
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}; demo output:\n{self.output()}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.children = children_of(self.process.pid)
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        """After a failed test: leave nothing running."""
        for pid in [self.process.pid, *children_of(self.process.pid), *self.children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)


@pytest.fixture
def demo(tmp_path):
    started: list[Demo] = []

    def start(folder: Path | None = None, port: int | None = None,
              mail_port: int | None = None) -> Demo:
        d = Demo(folder or tmp_path / "demo", port or free_port(), mail_port or _mail_ports())
        started.append(d)
        return d

    yield start
    for d in started:
        if d.process.poll() is None:
            d.kill()


def _mail_ports() -> int:
    """A free port whose next port is free too (the catcher's page is on mail_port + 1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


def _free(port: int) -> bool:
    """Whether a server could listen here now (connections we closed may linger in TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def get(url: str) -> tuple[int, dict, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, dict(response.headers), response.read().decode()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_reminder_link_opens_the_confirmation_page_and_ctrl_c_stops_everything(demo):
    d = demo()
    reminders = d.wait_for(lambda: len(d.reminders()) == 6 and d.reminders(), "six reminders")
    assert set(reminders) == ACTIVE  # the inactive person on the sample roster gets nothing
    d.wait_for(lambda: "tick --at" in d.output(), "the instructions, once the web app answers")
    assert f"http://127.0.0.1:{d.mail_port + 1}/" in d.output()

    status, _, page = get(f"{d.mail_url}/m/{reminders['amira.khan@example.org']}")
    assert status == 200
    # One email naming both policies for everyone (the example lone-working one is for the site
    # team only), a personal link for each.
    assert "Use of Social Media Policy" in page and "Staff Code of Conduct (example)" in page
    assert "Lone Working" not in page
    links = re.findall(rf'href="(http://127\.0\.0\.1:{d.port}/c/[A-Za-z0-9_-]{{43}})"', page)
    assert len(set(links)) == 2, links
    link = links[0]
    _, headers, part = get(f"{d.mail_url}/m/{reminders['amira.khan@example.org']}/html")
    assert headers["Content-Security-Policy"].startswith("sandbox")
    assert link in part  # the HTML part carries the same link, still clickable

    status, _, confirm_page = get(link)
    assert status == 200
    assert "Hello Amira." in confirm_page

    children = children_of(d.process.pid)
    assert len(children) == 2  # `signoff serve` and `signoff scheduler`
    assert d.stop(signal.SIGINT) == 0, d.output()
    assert not any(alive(pid) for pid in children)
    for port in (d.port, d.mail_port, d.mail_port + 1):
        assert _free(port), f"port {port} still in use after the demo stopped"
    assert "Traceback" not in d.output()


def test_second_run_reuses_the_folder_and_sends_nothing_twice(demo, tmp_path):
    first = demo()
    first.wait_for(lambda: len(first.reminders()) == 6, "six reminders")
    assert first.stop(signal.SIGTERM) == 0, first.output()
    kept = sorted(p.name for p in (tmp_path / "demo" / "mail").glob("*.eml"))
    log = tmp_path / "demo" / "logs" / "scheduler.log"
    ticks_before = log.read_text().count("tick at")
    # Between runs, the office makes Ben inactive (as the console's Deactivate does).
    database = sqlite3.connect(tmp_path / "demo" / "signoff.db")
    with database:
        database.execute("UPDATE staff SET active = 0 WHERE email = 'ben.lewis@example.org'")
    database.close()

    second = demo()
    second.wait_for(lambda: log.read_text().count("tick at") > ticks_before,
                    "the second run's first tick")
    assert "the roster is as you left it" in second.output() and "added" not in second.output()
    database = sqlite3.connect(tmp_path / "demo" / "signoff.db")
    assert database.execute("SELECT active FROM staff WHERE email = 'ben.lewis@example.org'") \
        .fetchone() == (0,)
    database.close()
    assert len(second.mail()) == 6  # the first run's mail, read back from its .eml files
    assert sorted(p.name for p in (tmp_path / "demo" / "mail").glob("*.eml")) == kept
    assert second.stop() == 0, second.output()


def test_busy_port_is_one_line_and_exit_2(demo):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        d = demo(port=busy.getsockname()[1])
        assert d.process.wait(timeout=30) == 2
    lines = d.output().strip().splitlines()
    assert len(lines) == 1 and "already in use" in lines[0], lines
