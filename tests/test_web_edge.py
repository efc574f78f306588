"""`signoff serve` on the internet's side of a reverse proxy: the client's real address and scheme
through exactly `[web] proxy_count` proxies, and nothing taken from a client that is not one;
bodies refused before they are read; slow clients that cannot starve anyone else; a log that keeps
its warnings for what matters. Each test starts the real server on loopback, on both databases."""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from admin_helpers import ADMIN, PASSWORD
from conftest import hidden_fields, link_in
from helpers import serve, stop

pytestmark = pytest.mark.slow  # each starts signoff serve


class Browser:
    """Requests as a browser makes them, arriving as the proxy (or nobody) passes them on: its
    Host, any X-Forwarded-* the proxy adds, and the cookies the server set."""

    def __init__(self, base: str, host: str | None = None, **forwarded: str):
        self.port = urlsplit(base).port
        self.headers = {"Host": host or f"127.0.0.1:{self.port}", "User-Agent": "Phone Browser 1.0"}
        self.headers.update({f"X-Forwarded-{k.title()}": v for k, v in forwarded.items()})
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, **headers: str):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        sent = {**self.headers, **headers}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode()
        finally:
            conn.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, response.headers, text


def _configure(config: Path, base_url: str, proxy_count: int) -> None:
    text = config.read_text().replace('base_url = "http://signoff.test"', f'base_url = "{base_url}"')
    config.write_text(text + f"\n[web]\nproxy_count = {proxy_count}\n")


def _add_admin(cli, config: Path) -> None:
    added = cli("admin", "add", ADMIN, "--password-stdin", config=config, input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output


def _recorded_ip(cli, config: Path, email: str) -> str:
    csv = cli("report", "--format", "csv", config=config).output.splitlines()
    header = csv[0].split(",")
    row = next(r for r in csv if f",{email}," in r).split(",")
    return row[header.index("ip_address")]


def _links(smtp) -> dict[str, str]:
    return {m["To"].addresses[0].addr_spec: urlsplit(link_in(m)).path for m in smtp.inbox.messages}


def test_behind_one_proxy_the_real_client_is_recorded_and_limited(setup, cli, smtp):
    config = setup(working_days_only="false")
    _configure(config, "https://signoff.test", proxy_count=1)
    _add_admin(cli, config)
    assert cli("tick", config=config).exit_code == 0
    link = _links(smtp)["amira@example.org"]
    proc, log, base = serve(config)
    try:
        # Amira's phone, through nginx: it appends her address to whatever she sent.
        phone = Browser(base, host="signoff.test", For="6.6.6.6, 203.0.113.7", Proto="https")
        status, headers, page = phone.request("GET", link)
        assert status == 200
        assert int(re.search(r"max-age=(\d+)", headers["Strict-Transport-Security"])[1]) \
            >= 180 * 86400
        assert "Secure" in headers["Set-Cookie"]
        # Flask-WTF's https check wants the page's own Referer, which the page now lets through.
        form = {**hidden_fields(page), "s0": "y", "s1": "y"}
        assert phone.request("POST", link, form)[0] == 400  # no Referer over https: refused
        status, _, _ = phone.request("POST", link, form, Referer=f"https://signoff.test{link}")
        assert status == 303 and "You confirmed" in phone.request("GET", link)[2]

        # Redirects are https and on base_url's host; another Host is refused, never echoed.
        status, headers, _ = phone.request("GET", "/admin")
        assert status == 308 and headers["Location"] == "https://signoff.test/admin/"
        status, headers, _ = phone.request("GET", "/admin", Host="evil.example")
        assert status == 400 and "evil.example" not in (headers["Location"] or "")

        # Twenty bad sign-ins from one address lock out that address, not the office's.
        attacker = Browser(base, host="signoff.test", For="198.51.100.9", Proto="https")
        office = Browser(base, host="signoff.test", For="192.0.2.44", Proto="https")
        referer = "https://signoff.test/admin/login"
        for n in range(21):
            token = hidden_fields(attacker.request("GET", "/admin/login")[2])["csrf_token"]
            status, _, _ = attacker.request("POST", "/admin/login", {
                "csrf_token": token, "email": f"guess{n}@example.org", "password": "wrong guess"},
                Referer=referer)
            assert status == (401 if n < 20 else 429), (n, status)
        token = hidden_fields(office.request("GET", "/admin/login")[2])["csrf_token"]
        status, headers, _ = office.request("POST", "/admin/login", {
            "csrf_token": token, "email": ADMIN, "password": PASSWORD}, Referer=referer)
        assert status == 303 and headers["Location"] == "/admin/"
    finally:
        assert stop(proc) == 0
    assert "Traceback" not in log.read_text()
    assert _recorded_ip(cli, config, "amira@example.org") == "203.0.113.7"


def test_without_a_proxy_forwarded_headers_are_ignored(setup, cli, smtp):
    config = setup(working_days_only="false")
    assert cli("tick", config=config).exit_code == 0
    link = _links(smtp)["ben@example.org"]
    proc, log, base = serve(config)
    try:
        spoofer = Browser(base, For="203.0.113.7", Proto="https")
        status, headers, page = spoofer.request("GET", link)
        assert status == 200 and "Strict-Transport-Security" not in headers
        form = {**hidden_fields(page), "s0": "y", "s1": "y"}
        assert spoofer.request("POST", link, form)[0] == 303
        status, headers, _ = spoofer.request("GET", "/admin")
        assert headers["Location"] == f"{base}/admin/"  # http: the claimed https was ignored
    finally:
        assert stop(proc) == 0
    assert _recorded_ip(cli, config, "ben@example.org") == "127.0.0.1"


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    try:
        return sock.recv(200)
    except socket.timeout:
        return b"(no answer in 10 s)"


def test_serve_refuses_big_bodies_unread_and_outlasts_slow_clients(setup, cli, smtp):
    config = setup()
    proc, log, base = serve(config, "--threads", "2")
    port = urlsplit(base).port
    held: list[socket.socket] = []
    try:
        # A gigabyte announced to the upload, without signing in: 413 before a byte of it is sent.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /admin/people/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: multipart/form-data; boundary=x\r\n"
                         b"Content-Length: 1073741824\r\n\r\n")
            assert _answer(sock).startswith(b"HTTP/1.1 413"), "the body was waited for"

        # 120 clients that start a request and never finish it (a slowloris) ...
        for _ in range(120):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            held.append(sock)
        # ... while everyone else is still answered.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()

        # A method a page does not take says which ones it does.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/healthz")
        response = conn.getresponse()
        assert response.status == 405 and "GET" in response.headers["Allow"]
        conn.close()

        # A burst beyond the two threads waits its turn without a warning for each request.
        def fetch():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("GET", "/healthz")
            c.getresponse().read()
            c.close()

        burst = [threading.Thread(target=fetch) for _ in range(30)]
        for t in burst:
            t.start()
        for t in burst:
            t.join()

        # The silent ones are cut: 30 s without a byte (checked every 5 s) closes a connection.
        started = time.monotonic()
        for sock in held:
            sock.settimeout(max(1.0, 45 - (time.monotonic() - started)))
            assert sock.recv(1) == b"", "a silent connection was kept open"
        assert time.monotonic() - started < 45
    finally:
        for sock in held:
            sock.close()
        assert stop(proc) == 0
    said = log.read_text()
    assert "Task queue depth" not in said and "Traceback" not in said, said
