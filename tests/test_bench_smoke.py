"""`make bench` is not part of `make test`: each benchmark is run here once at a tiny scale, so
that one the code has moved away from fails here rather than at the next `make bench`."""

from __future__ import annotations

# On SQLite only: these check the benchmarks' code, not the figures.


def test_send_throughput_runs_a_tick_and_the_floor_over_the_same_messages():
    from bench import throughput

    figures = throughput.run(rounds=1, staff=20)
    assert figures["ratio"] > 0 and figures["ratios"] == [round(figures["ratio"], 2)]


def test_idle_tick_counts_its_statements():
    from bench import idle

    seconds, statements = idle.measure(30)
    assert seconds > 0 and statements > 5


def test_memory_samples_the_tick_and_its_helpers():
    from bench import memory

    figures = memory.run(staff=120)  # more than a batch: the composer helper is forked
    assert figures["sent"] == 120 and figures["children"] >= 1
    assert figures["peak_mb"] >= figures["tick_process_mb"] > 0


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
