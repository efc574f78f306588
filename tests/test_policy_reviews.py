"""Policy reviews, on both databases: each policy's review is due `review_every_months` after the
latest approval of its text in force; the head teacher is reminded four weeks before and on the
day, one email each; the dashboard lists the reviews due; an early review brings the date
forward with why and by whom; the governors' next approval counts the next review from it."""

from __future__ import annotations

import re

import time_machine

from admin_helpers import ADMIN, PASSWORD, admin, app, clock, console, post, sign_in  # noqa: F401
from conftest import at
from helpers import flat, parts


def _tick(cli, config, when: str):
    result = cli("tick", "--at", at(when).isoformat(), config=config)
    assert result.exit_code == 0, result.output
    return result


def _approve(cli, config, date: str, name: str = "Jane Smith", role: str = "Chair of Governors"):
    result = cli("policy", "approve", "social-media", "--name", name, "--role", role, "--date",
                 date, config=config)
    assert result.exit_code == 0, result.output


def _reviews_to_head(smtp) -> list[str]:
    return [m["Subject"] for m in smtp.inbox.to("head@example.org") if "review" in m["Subject"]]


def test_the_head_teacher_is_reminded_four_weeks_before_a_review_and_on_the_day(setup, cli,
                                                                               smtp):
    config = setup(extra="")
    _approve(cli, config, "2025-11-14")  # a year's review: due Sat 14 Nov 2026
    listed = cli("policy", "list", config=config).output
    assert ("next review: 2026-11-14 (12 months after its approval on 14 November 2025)"
            in listed)
    _tick(cli, config, "2026-10-16 08:00")  # Fri: not four weeks yet (that is Sat 17 Oct)
    assert _reviews_to_head(smtp) == []
    # Four weeks before falls on a Saturday: the reminder goes on the next working day.
    _tick(cli, config, "2026-10-19 07:59")
    assert _reviews_to_head(smtp) == []
    _tick(cli, config, "2026-10-19 08:00")
    assert _reviews_to_head(smtp) == [
        "The Use of Social Media Policy is due for review on 14 November 2026"]
    text = parts(smtp.inbox.to("head@example.org")[0])[0]
    assert "12 months after its approval on 14 November 2025" in text
    assert re.search(r"http://signoff.test/admin/policies/\d+", text)
    _tick(cli, config, "2026-10-20 08:00")
    assert len(_reviews_to_head(smtp)) == 1  # once
    _tick(cli, config, "2026-11-16 08:00")  # the day (a Saturday) moved to Monday
    assert _reviews_to_head(smtp)[1:] == ["The Use of Social Media Policy is due for review"]
    _tick(cli, config, "2026-11-17 08:00")
    assert len(_reviews_to_head(smtp)) == 2

    # The governors approve the same text again: the next review counts from then, and nothing
    # more is sent about this one.
    _approve(cli, config, "2026-11-17")
    assert "next review: 2027-11-17" in cli("policy", "list", config=config).output
    _tick(cli, config, "2026-11-18 08:00")
    assert len(_reviews_to_head(smtp)) == 2


def test_a_policys_review_period_is_its_own_and_a_bad_one_is_refused(tmp_path, db_url, smtp,
                                                                      cli):
    from conftest import write_config

    config = write_config(tmp_path / "setting", db_url, smtp.port)
    table = 'file = "policy.md"\n'
    text = config.read_text()
    config.write_text(text.replace(table, table + "review_every_months = 0\n"))
    result = cli("init", config=config)
    assert result.exit_code == 2, result.output
    assert "review_every_months" in result.output and "from 1 to 60, got 0" in result.output
    config.write_text(text.replace(table, table + "review_every_months = 24\n"))
    assert cli("init", config=config).exit_code == 0
    _approve(cli, config, "2026-08-28")
    assert "next review: 2028-08-28 (24 months after its approval on 28 August 2026)" in cli(
        "policy", "list", config=config).output
    exported = cli("policy", "export", config=config).output
    assert "review_every_months = 24" in exported


def test_the_dashboard_lists_a_review_and_an_early_review_brings_it_forward(admin, app, cli,
                                                                           console, smtp, clock):
    from sqlalchemy import select

    from workflow.models import Event, Policy

    # On 2 Sep 2026 nothing is due: the text came into force on first init, a year's review.
    page = flat(admin.get("/admin/").get_data(as_text=True))
    assert "Policy reviews due" not in page
    with app.extensions["signoff"].db.read() as session:
        policy_id = session.scalar(select(Policy.id).where(Policy.slug == "social-media"))
    edit = flat(admin.get(f"/admin/policies/{policy_id}").get_data(as_text=True))
    assert "Next review:" in edit and "(no approval recorded)" in edit

    url = f"/admin/policies/{policy_id}/review"
    refused = post(admin, url, {"on": "2026-09-02", "reason": ""})
    assert refused.status_code == 400 and "Say why" in flat(refused.get_data(as_text=True))
    done = post(admin, url, {"on": "2026-09-02",
                             "reason": "A parent shared a photo from a staff member's account."})
    assert done.status_code == 303
    page = flat(admin.get("/admin/").get_data(as_text=True))
    assert "Policy reviews due" in page
    assert re.search(r"Use of Social Media Policy ?: due today", page)
    assert f"set by {ADMIN}: A parent shared a photo" in page
    with app.extensions["signoff"].db.read() as session:
        event = session.scalars(select(Event).where(Event.kind == "review_set")).one()
    assert event.actor == ADMIN and event.detail["on"] == "2026-09-02"
    # The head teacher hears on the day (today, after the send time), once.
    before = len(smtp.inbox)
    _tick(cli, console, "2026-09-02 10:05")
    sent = [m["Subject"] for m in smtp.inbox.messages[before:]]
    assert sent == ["The Use of Social Media Policy is due for review"]
    # The governors' approval concludes it.
    _approve(cli, console, "2026-09-02")
    page = flat(admin.get("/admin/").get_data(as_text=True))
    assert "Policy reviews due" not in page
    edit = flat(admin.get(f"/admin/policies/{policy_id}").get_data(as_text=True))
    assert "Next review: Thursday 2 September 2027" in edit
