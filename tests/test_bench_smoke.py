"""`make bench` is not part of `make test`: each benchmark is run here once at a tiny scale, so
that one the code has moved away from fails here rather than at the next `make bench`."""

from __future__ import annotations

import pytest

# On SQLite only: these check the benchmarks' code, not the figures.
pytestmark = pytest.mark.slow  # each starts a sink (and some, signoff) as a process


def test_send_cost_divides_the_tick_by_the_messages_the_sink_received():
    from bench import send_cost

    figures = send_cost.run(staff=20)  # run() asserts the sink received all 20
    assert figures["sent"] == 20 and figures["queued"] == 60  # one email for three policies
    assert figures["per_message_ms"] == 1000 * figures["tick_s"] / 20
    assert 0 < figures["sending_s"] < figures["tick_s"]


def test_pacing_spaces_the_messages_the_sink_timed():
    from bench import pacing

    figures = pacing.run(messages=20, per_minute=1200)  # one every 50 ms: 1 s in all
    assert figures["expected_s"] == 1.0
    # Unpaced, 20 messages to the sink take a fraction of that.
    assert 0.9 <= figures["s"] < 2.0
    assert figures["shortest_gap_ms"] > 10
    assert figures["most_in_60s"] == 20


def test_pacing_counts_the_busiest_window_half_open():
    from bench.pacing import most_within

    assert most_within([0.0, 1.0, 2.0], 1.0) == 1
    assert most_within([0.0, 1.0, 2.0], 1.5) == 2
    assert most_within([0.0, 3.0, 3.1, 3.2, 9.0], 1.0) == 3


def test_memory_reads_the_peak_of_the_one_tick_process():
    from bench import memory

    figures = memory.run(staff=120)  # run() fails if the tick started a process of its own
    assert figures["sent"] == 120
    assert figures["peak_mb"] >= figures["before_tick_mb"] > 0
    assert figures["tick_s"] > 0


def test_idle_tick_counts_its_statements():
    from bench import idle

    seconds, statements = idle.measure(30)
    assert seconds > 0 and statements > 5


def test_confirmation_page_is_measured_against_healthz(monkeypatch):
    from bench import web

    monkeypatch.setattr(web, "ROUNDS", 1)
    monkeypatch.setattr(web, "SECONDS", 0.2)
    figures = web.run(staff=20)  # _load() asserts every answer was a 200
    assert figures["page_rps"] > 0 and figures["healthz_rps"] > 0 and figures["page_p99_ms"] > 0


def test_digest_renders_everyone_overdue(monkeypatch):
    from bench import digest

    monkeypatch.setattr(digest, "STAFF", 25)
    figures = digest.run()
    assert figures["s"] > 0 and figures["bytes"] > 25 * 20


def test_startup_times_each_command_as_a_new_process():
    from bench import startup

    figures = startup.run()  # _best() fails if a command fails
    assert set(figures) == {"version_s", "help_s", "report_s"}
    assert all(0 < s < 30 for s in figures.values())


def test_console_people_page_is_timed_signed_in():
    from bench import console

    figures = console.run(staff=150)  # run() asserts each page answered 200 to a signed-in admin
    assert figures["people_kb"] > 10 and figures["people_search_kb"] < figures["people_kb"]


def test_replan_moves_every_open_request_and_the_plan_has_a_row_per_send():
    from bench import replan

    figures = replan.run(staff=30)  # run() asserts every open request of the policy moved
    assert figures["changed"] == 30
    # From 3 Sep: each person's two follow-ups of each of the three policies, and the digests.
    assert figures["plan_rows"] >= 30 * 3 * 2
