"""Twenty simultaneous POSTs of one confirmation form to a real `signoff serve`, on both databases:
one confirmation, one event, twenty clean answers."""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import urllib.parse
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from conftest import SIGNOFF, free_port, hidden_fields, link_in
from ports import wait_until_serving



@pytest.fixture
def server(setup, cli, smtp):
    """`signoff serve` on a free port, and Amira's link path from a reminder sent just now."""
    # Every day a send day, so a tick at the real time always sends this cycle's first reminder
    # (the page checks links against the real clock's cycle).
    config = setup(working_days_only="false")
    assert cli("tick", config=config).exit_code == 0
    path = urlsplit(link_in(smtp.inbox.to("amira@example.org")[0])).path
    port = free_port()
    env = {**os.environ, "SIGNOFF_SECRET_KEY": "twenty-posts-test-key"}
    process = subprocess.Popen([*SIGNOFF, "--config", str(config), "serve", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=config.parent)
    wait_until_serving(port, process)
    try:
        yield config, port, path
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_twenty_simultaneous_posts_make_one_confirmation_and_twenty_clean_answers(server):
    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Confirmation, Event

    config, port, path = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    page = conn.getresponse()
    html = page.read().decode()
    cookie = page.getheader("Set-Cookie").split(";", 1)[0]
    conn.close()
    body = urllib.parse.urlencode({**hidden_fields(html), "s0": "y", "s1": "y"})

    start = threading.Barrier(20)
    answers: list[int | str] = []

    def post() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            c.connect()
            start.wait()
            c.request("POST", path, body=body, headers={
                "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
            response = c.getresponse()
            text = response.read().decode()
            answers.append(response.status if "Traceback" not in text else "traceback")
        except Exception as exc:  # noqa: BLE001 - any failure is an unclean answer
            answers.append(repr(exc))
        finally:
            c.close()

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert len(answers) == 20
    assert set(answers) <= {303, 200}, answers
    assert 303 in answers
    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Confirmation)) == 1
            assert session.scalar(select(func.count()).select_from(Event)
                                  .where(Event.kind == "confirmed")) == 1
    finally:
        db.dispose()
