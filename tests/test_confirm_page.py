"""The page behind a person's link, through Flask's test client and over real HTTP: GET/HEAD never
confirm, the form records exactly one confirmation with its evidence, bad links get a helpful
404/410, and the security headers are on every page."""

from __future__ import annotations

import hashlib
import http.client
import http.cookiejar
import re
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlalchemy import select, update
from werkzeug.serving import make_server

from conftest import at, free_port, hidden_fields, initialise, link_in, write_config
from helpers import CONTACT, flat, set_first_name, with_contact

STATEMENTS = ["I have re-read the policy.", "No child or parent is my online friend or follower."]
OTHERS = ("Ben Lewis", "ben@example.org", "Chloe Evans", "chloe@example.org")


@pytest.fixture
def clock():
    """The page reads the real clock: hold it in the 2026 cycle, the day after the reminders."""
    with time_machine.travel(at("2026-09-02 10:00"), tick=False) as traveller:
        yield traveller


@pytest.fixture
def links(app, cli, smtp, clock):
    """Send the 2026 first reminders; each person's link path (/c/<token>)."""
    result = cli("tick", "--at", "2026-09-01T08:00+01:00")
    assert result.exit_code == 0, result.output
    return {m["To"].addresses[0].addr_spec.split("@")[0]: urlsplit(link_in(m)).path
            for m in smtp.inbox.messages}



def ticked(client, path: str) -> dict[str, str]:
    """The form on the page with every statement ticked, ready to POST."""
    return {**hidden_fields(client.get(path).get_data(as_text=True)), "s0": "y", "s1": "y"}


def evidence(app) -> tuple[list, list[str]]:
    """Every Confirmation row, and the kinds of every event, straight from the database."""
    from workflow.models import Confirmation, Event

    with app.extensions["signoff"].db.read() as session:
        return (list(session.scalars(select(Confirmation))),
                list(session.scalars(select(Event.kind).order_by(Event.id))))


def report_status(cli, email: str) -> str:
    result = cli("report", "--format", "csv")
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if f",{email}," in row)
    return line.split(",")[4]


def assert_friendly(response, *phrases: str) -> None:
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "File \"" not in text
    for other in OTHERS:
        assert other not in text
    for phrase in phrases:
        assert phrase in text, text


def assert_security_headers(response) -> None:
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_mail_scanners_opening_the_link_never_confirm(app, cli, links):
    client = app.test_client()
    _, events_before = evidence(app)
    for _ in range(15):
        scan = client.get(links["amira"], headers={"User-Agent": "SafeLinks/1.0"})
        assert scan.status_code == 200
        head = client.head(links["amira"], headers={"User-Agent": "Barracuda"})
        assert head.status_code == 200 and head.data == b""
    confirmations, events_after = evidence(app)
    assert confirmations == []
    assert events_after == events_before
    assert report_status(cli, "amira@example.org") == "pending"


def test_page_shows_the_policy_the_person_and_every_statement(app, links):
    page = app.test_client().get(links["amira"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<h3>6. Security checklist summary</h3>" in html  # rendered from the Markdown
    assert html.count("<h1>") == 1  # the policy's own headings sit under the page's title
    assert "<em>friend</em>" in html
    assert "Hello Amira" in flat(html)
    for index, statement in enumerate(STATEMENTS):
        assert f'<input type="checkbox" id="s{index}" name="s{index}"' in html
        assert f'<label for="s{index}">{statement}</label>' in html
    assert "<script" not in html.lower()
    assert "csrf_token" in hidden_fields(html)
    assert_security_headers(page)
    for other in OTHERS:
        assert other not in html


def test_post_without_csrf_token_is_refused_politely(app, links):
    client = app.test_client()
    page = client.get(links["amira"])
    form = hidden_fields(page.get_data(as_text=True))
    del form["csrf_token"]
    response = client.post(links["amira"], data={**form, "s0": "y", "s1": "y"})
    assert response.status_code == 400
    assert_friendly(response, "Please try again", "reload")
    assert_security_headers(response)
    assert evidence(app)[0] == []


def checkbox(html: str, index: int) -> str:
    """The <input> tag of statement `index`'s tick box."""
    return re.search(rf'<input type="checkbox" id="s{index}"[^>]*>', html).group(0)


def test_a_missed_box_is_marked_by_the_boxes_and_focused_and_the_ticked_one_stays_ticked(
        app, cli, links):
    client = app.test_client()
    form = hidden_fields(client.get(links["amira"]).get_data(as_text=True))
    response = client.post(links["amira"], data={**form, "s0": "y"})
    assert response.status_code == 400
    assert_friendly(response, "Please tick every statement", "1 of 2 not ticked")
    html = response.get_data(as_text=True)
    # The error is by the boxes, not at the top of the page six screens above them.
    error = re.search(r'<p class="error" id="([^"]+)">([^<]*)</p>', html)
    assert "1 of 2 not ticked" in error.group(2)
    assert html.index("</article>") < html.index("<legend>") < error.start() \
        < html.index('id="s0"')
    assert "not ticked" not in html[:html.index("</article>")]
    ticked_box, missed_box = checkbox(html, 0), checkbox(html, 1)
    assert " checked" in ticked_box and "aria-invalid" not in ticked_box
    assert "autofocus" not in ticked_box
    assert " checked" not in missed_box and 'aria-invalid="true"' in missed_box
    assert f'aria-describedby="{error.group(1)}"' in missed_box
    assert " autofocus" in missed_box
    assert re.search(r'<div class="tick invalid">\s*' + re.escape(missed_box), html)
    confirmations, events = evidence(app)
    assert confirmations == [] and "confirmed" not in events
    assert report_status(cli, "amira@example.org") == "pending"


def test_with_no_box_ticked_both_are_marked_and_the_first_is_focused(app, links):
    client = app.test_client()
    form = hidden_fields(client.get(links["amira"]).get_data(as_text=True))
    response = client.post(links["amira"], data=form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "2 of 2 not ticked" in html
    first, second = checkbox(html, 0), checkbox(html, 1)
    assert 'aria-invalid="true"' in first and 'aria-invalid="true"' in second
    assert " autofocus" in first and "autofocus" not in second
    assert html.count("autofocus") == 1


def test_confirming_records_the_evidence_once_and_a_repeat_keeps_the_first(app, cli, links, clock):
    from workflow import policies

    client = app.test_client()
    form = hidden_fields(client.get(links["amira"]).get_data(as_text=True))
    agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)"
    response = client.post(links["amira"], data={**form, "s0": "y", "s1": "y"},
                           headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(links["amira"])
    done = client.get(links["amira"])
    assert_friendly(done, "You confirmed", "Wednesday 2 September 2026 at 10:00")

    clock.move_to(at("2026-09-03 15:00"))
    again = client.post(links["amira"], data={**form, "s0": "y", "s1": "y"})
    assert again.status_code in (200, 303)
    assert "2 September 2026 at 10:00" in client.get(links["amira"]).get_data(as_text=True)

    (confirmation,), events = evidence(app)
    assert events.count("confirmed") == 1
    assert confirmation.confirmed_at == at("2026-09-02 10:00")
    text = (Path(app.extensions["signoff"].config.path).parent / "policy.md").read_text()
    assert confirmation.version_sha256 == policies.sha256(text) == hashlib.sha256(
        text.encode()).hexdigest()
    assert confirmation.statements == STATEMENTS
    assert confirmation.ip_address == "192.0.2.7"
    assert confirmation.user_agent == agent
    assert confirmation.method == "self"
    assert report_status(cli, "amira@example.org") == "confirmed"
    assert report_status(cli, "ben@example.org") == "pending"


def test_bad_links_get_a_helpful_404_without_hints(app, links):
    client = app.test_client()
    form = ticked(client, links["amira"])
    token = links["amira"].rsplit("/", 1)[1]
    altered = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for path in ("/c/" + "x" * 43, "/c/short", "/c/" + token + "extra", "/c/" + altered,
                 "/c/" + token[:-1] + "!"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert_friendly(response, "Link not recognised", "most recent email")
        assert_security_headers(response)
        post = client.post(path, data=form)
        assert post.status_code == 404, path
        assert_friendly(post)
    assert evidence(app)[0] == []


def test_a_revoked_link_is_gone_with_a_pointer_to_the_newest_email(app, links):
    from workflow import tokens
    from workflow.models import Link

    token = links["amira"].rsplit("/", 1)[1]
    client = app.test_client()
    form = ticked(client, links["amira"])
    with app.extensions["signoff"].db.write() as session:
        session.execute(update(Link).where(Link.token_sha256 == tokens.digest(token))
                        .values(revoked_at=at("2026-09-02 09:00")))
    response = client.get(links["amira"])
    assert response.status_code == 410
    assert_friendly(response, "replaced by a newer one", "most recent email")
    assert_security_headers(response)
    assert client.post(links["amira"], data=form).status_code == 410  # a page left open
    assert evidence(app)[0] == []
    assert client.get(links["ben"]).status_code == 200  # other people's links are untouched


def test_last_years_link_is_gone_once_the_new_cycle_opens(app, links, clock):
    client = app.test_client()
    clock.move_to(at("2027-09-01 07:59"))
    page = client.get(links["amira"])
    assert page.status_code == 200  # still the 2026 cycle
    form = {**hidden_fields(page.get_data(as_text=True)), "s0": "y", "s1": "y"}
    clock.move_to(at("2027-09-02 10:00"))
    response = client.get(links["amira"])
    assert response.status_code == 410
    assert_friendly(response, "2026 review", "has closed", "newest email")
    assert client.post(links["amira"], data=form).status_code == 410
    assert evidence(app)[0] == []


def test_each_email_has_its_own_link_and_the_first_still_works(app, cli, smtp, links):
    result = cli("tick", "--at", "2026-09-08T08:00+01:00")
    assert result.exit_code == 0, result.output
    followup = urlsplit(link_in(smtp.inbox.to("amira@example.org")[-1])).path
    assert followup != links["amira"]
    client = app.test_client()
    assert "Hello Amira" in flat(client.get(followup).get_data(as_text=True))
    page = client.get(links["amira"])
    assert page.status_code == 200
    form = hidden_fields(page.get_data(as_text=True))
    assert client.post(links["amira"], data={**form, "s0": "y", "s1": "y"}).status_code == 303
    assert "You confirmed" in client.get(followup).get_data(as_text=True)
    assert len(evidence(app)[0]) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_database_holds_only_the_hash_of_a_token(app, links, db_url):
    from workflow import tokens

    app.extensions["signoff"].db.dispose()
    path = Path(db_url.split("///", 1)[1])
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for person, link in links.items():
        token = link.rsplit("/", 1)[1]
        assert token.encode() not in stored, person
        assert tokens.digest(token).encode() in stored, person


def test_over_real_http_scanners_change_nothing_and_the_form_records_ip_and_agent(app, cli, links):
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        for method in ("GET", "HEAD") * 5:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
            conn.request(method, links["ben"], headers={"User-Agent": "LinkPreview"})
            response = conn.getresponse()
            response.read()
            conn.close()
            assert response.status == 200
            assert response.getheader("X-Frame-Options") == "DENY"
        assert evidence(app)[0] == []

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.addheaders = [("User-Agent", "Phone Browser 1.0")]
        with opener.open(base + links["ben"], timeout=10) as page:
            form = hidden_fields(page.read().decode())
        body = urllib.parse.urlencode({**form, "s0": "y", "s1": "y"}).encode()
        with opener.open(base + links["ben"], data=body, timeout=10) as done:  # follows the 303
            assert done.status == 200 and "You confirmed" in done.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=10)
    (confirmation,), _ = evidence(app)
    assert confirmation.ip_address == "127.0.0.1"
    assert confirmation.user_agent == "Phone Browser 1.0"
    assert report_status(cli, "ben@example.org") == "confirmed"


def test_the_policy_title_is_shown_once_and_the_version_code_never(app, links):
    from workflow.models import PolicyVersion

    with app.extensions["signoff"].db.read() as session:
        sha = session.scalars(select(PolicyVersion.sha256)).one()
    client = app.test_client()
    pages = [client.get(links["amira"])]
    form = hidden_fields(pages[0].get_data(as_text=True))
    pages.append(client.post(links["amira"], data={**form, "s0": "y"}))
    assert client.post(links["amira"], data={**form, "s0": "y", "s1": "y"}).status_code == 303
    pages.append(client.get(links["amira"]))  # the confirmed page
    for page in pages:
        html = page.get_data(as_text=True)
        main = flat(html[html.index("<main"):])  # what the page shows, not its <title>
        assert main.count("Use of Social Media Policy") == 1, main[:300]
        assert sha[:12] not in main and "version" not in main.lower()
    assert "You confirmed the Use of Social Media Policy" in flat(pages[-1].get_data(as_text=True))
    (confirmation,), _ = evidence(app)
    assert confirmation.version_sha256 == sha  # the evidence keeps it


def test_the_page_greets_the_person_by_their_first_name(app, links):
    config = Path(app.extensions["signoff"].config.path)
    set_first_name(config, "ben@example.org", "")  # none known: their name in full
    assert "Hello Ben Lewis." in flat(app.test_client().get(links["ben"]).get_data(as_text=True))
    set_first_name(config, "amira@example.org", "Amira")
    client = app.test_client()
    page = client.get(links["amira"])
    assert "Hello Amira." in flat(page.get_data(as_text=True))
    assert "Amira Khan" not in page.get_data(as_text=True)
    form = hidden_fields(page.get_data(as_text=True))
    assert client.post(links["amira"], data={**form, "s0": "y", "s1": "y"}).status_code == 303
    done = flat(client.get(links["amira"]).get_data(as_text=True))
    assert "Thank you, Amira" in done and "Amira Khan" not in done


def test_someone_excused_is_told_so_by_their_first_name(app, links):
    set_first_name(Path(app.extensions["signoff"].config.path), "ben@example.org", "Ben")
    _exempt(app, "ben@example.org")
    page = app.test_client().get(links["ben"])
    assert page.status_code == 200
    text = flat(page.get_data(as_text=True))
    assert "Ben, you have been excused" in text and "Ben Lewis" not in text


def _exempt(app, email: str) -> None:
    from workflow.models import Request, Staff

    with app.extensions["signoff"].db.write() as session:
        staff = session.scalars(select(Staff.id).where(Staff.email == email)).one()
        session.execute(update(Request).where(Request.staff_id == staff)
                        .values(exempt_at=at("2026-09-02 09:00"), exempt_reason="On leave",
                                closed_at=at("2026-09-02 09:00")))


@pytest.mark.parametrize("contact", [CONTACT, None], ids=["contact set", "no contact"])
def test_the_contact_line_is_on_every_staff_page_when_set_and_nowhere_when_not(
        tmp_path, db_url, smtp, cli, clock, contact):
    from workflow import config as config_mod
    from workflow import tokens
    from workflow.app import create_app
    from workflow.models import Link

    config = write_config(tmp_path, db_url, smtp.port)
    if contact:
        with_contact(config, contact)
    initialise(cli, config)
    assert cli("tick", "--at", "2026-09-01T08:00+01:00", config=config).exit_code == 0
    links = {m["To"].addresses[0].addr_spec.split("@")[0]: urlsplit(link_in(m)).path
             for m in smtp.inbox.messages}
    app = create_app(config_mod.load(config))
    try:
        client = app.test_client()
        _exempt(app, "ben@example.org")
        with app.extensions["signoff"].db.write() as session:
            session.execute(update(Link).where(
                Link.token_sha256 == tokens.digest(links["chloe"].rsplit("/", 1)[1]))
                .values(revoked_at=at("2026-09-02 09:00")))
        pages = {"the confirmation page": client.get(links["amira"])}
        form = hidden_fields(pages["the confirmation page"].get_data(as_text=True))
        pages["a missed box"] = client.post(links["amira"], data={**form, "s0": "y"})
        client.post(links["amira"], data={**form, "s0": "y", "s1": "y"})
        pages["the confirmed page"] = client.get(links["amira"])
        pages["nothing to do"] = client.get(links["ben"])
        pages["gone"] = client.get(links["chloe"])
        pages["not found"] = client.get("/c/" + "x" * 43)
        assert [p.status_code for p in pages.values()] == [200, 400, 200, 200, 410, 404]
        for what, page in pages.items():
            text = flat(page.get_data(as_text=True))
            assert text.count(CONTACT) == (1 if contact else 0), what
            assert "None" not in text, what
        # The console is the office's own: no line telling them to ask the office.
        assert CONTACT not in client.get("/admin/login").get_data(as_text=True)
    finally:
        app.extensions["signoff"].db.dispose()
