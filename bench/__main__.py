"""`make bench`: each figure below with its target and PASS/MISS, measured on this machine, on
SQLite and (where its server binaries are installed) on PostgreSQL; then the table in Markdown as
docs/benchmarks.md has it. Exits 1 when a target is missed.

- the idle tick at 50,000 staff and 3 policies (< 200 ms), and its SQL statements (no more at 50,000 than at 5,000)
- the confirmation page's requests per second over /healthz's (≥ 0.6), and its p99 (< 50 ms)
- re-planning 50,000 open requests after a schedule change (< 2 s), and `plan --format csv` for
  50,000 staff and 3 policies over 8 weeks (< 5 s)
- the head teacher's digest with 5,000 overdue (< 1 s)
- the opening-day tick for 50,000 staff: the peak memory of its one process (< 300 MB)
- the opening-day tick for 5,000 staff and 3 policies to a local sink: one email each (5,000, not
  15,000), and milliseconds per email sent (< 5 ms)
- pacing at max_per_minute = 600: 300 messages take 30 s ± 5%, ≤ 600 in any 60 s, ≤ 11 in any 1 s
- the console at 50,000 staff and 3 policies: people (by name, by status, a search), the
  dashboard, a person, the schedule, policies, evidence (< 300 ms, < 200 KB); the evidence CSV's
  first byte (< 300 ms)
- start-up, as a new process: `signoff --version` and `--help` (< 0.3 s), `report` on six people
  (< 0.6 s); SQLite only, as it is what a command imports that counts

Not part of `make test`. Each benchmark builds its own throwaway setting with bulk-inserted staff,
and talks to real processes: an aiosmtpd sink, `signoff serve`, a PostgreSQL server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from . import console, databases, digest, idle, memory, pacing, replan, send_cost, startup, web


def main() -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()
    figures: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}

    def row(db: str, name: str, figure: str, target: str, ok: bool) -> None:
        figures.setdefault((name, target), {})[db] = (figure, ok)
        print(f"{'PASS' if ok else 'MISS'}  [{db}] {name}: {figure} (target {target})", flush=True)

    s = startup.run()
    for what, key, target in (("`signoff --version`", "version_s", 0.3),
                              ("`signoff --help`", "help_s", 0.3),
                              ("`signoff report`, six people", "report_s", 0.6)):
        row("sqlite", f"start-up: {what}", f"{s[key] * 1000:.0f} ms", f"< {target} s",
            s[key] < target)

    with databases.available() as found:
        for db, postgres in found.items():
            new_url = postgres.new_url if postgres else None

            i = idle.run(postgres)
            row(db, "idle tick, 50,000 staff, 3 policies, nothing due", f"{i['s_50000'] * 1000:.0f} ms",
                "< 200 ms", i["s_50000"] < 0.2)
            row(db, "SQL statements in that idle tick, at 5,000 and at 50,000 staff",
                f"{i['statements_5000']} and {i['statements_50000']}", "the same at both",
                i["statements_50000"] <= i["statements_5000"])

            w = web.run(db_url=new_url() if new_url else None)
            row(db, "confirmation page / `/healthz`, requests per second, 8 keep-alive clients",
                f"{w['ratio']:.2f} ({w['page_rps']:.0f} vs {w['healthz_rps']:.0f} req/s)",
                "≥ 0.6", w["ratio"] >= 0.6)
            row(db, "confirmation page p99 latency", f"{w['page_p99_ms']:.0f} ms", "< 50 ms",
                w["page_p99_ms"] < 50)

            k = console.run(db_url=new_url() if new_url else None)
            for what, key in (("people, by name", "people"), ("people, by status", "people_by_status"),
                              ("people, a search", "people_search"), ("dashboard", "dashboard"),
                              ("a person", "person"), ("schedule", "schedule"),
                              ("policies", "policies"), ("evidence list", "evidence"),
                              ("a cycle's evidence", "evidence_cycle")):
                row(db, f"console {what}, 50,000 staff, 3 policies",
                    f"{k[key + '_s'] * 1000:.0f} ms, {k[key + '_kb']:.0f} KB", "< 300 ms, < 200 KB",
                    k[key + "_s"] < 0.3 and k[key + "_kb"] < 200)
            row(db, "console evidence CSV, 50,000 staff: first byte (all of it)",
                f"{k['evidence_csv_first_s'] * 1000:.0f} ms ({k['evidence_csv_s']:.1f} s, "
                f"{k['evidence_csv_kb'] / 1024:.0f} MB)", "< 300 ms to the first byte",
                k["evidence_csv_first_s"] < 0.3)

            r = replan.run(db_url=new_url() if new_url else None)
            row(db, "re-planning 50,000 open requests after a schedule change",
                f"{r['replan_s'] * 1000:.0f} ms", "< 2 s", r["replan_s"] < 2)
            row(db, "`plan --format csv`, 50,000 staff, 3 policies, 8 weeks",
                f"{r['plan_s']:.1f} s ({r['plan_rows']:,} rows)", "< 5 s", r["plan_s"] < 5)

            d = digest.run(db_url=new_url() if new_url else None)
            row(db, "digest with 5,000 overdue people", f"{d['s'] * 1000:.0f} ms", "< 1 s",
                d["s"] < 1)

            m = memory.run(db_url=new_url() if new_url else None)
            row(db, "opening-day tick, 50,000 staff, peak memory of its one process",
                f"{m['peak_mb']:.0f} MB (tick {m['tick_s']:.0f} s)", "< 300 MB",
                m["peak_mb"] < 300)

            c = send_cost.run(db_url=new_url() if new_url else None)
            row(db, "send loop, opening day, 3 policies for 5,000 staff: cost per email to a "
                    "local sink",
                f"{c['per_message_ms']:.1f} ms ({c['sent']:,} emails for {c['queued']:,} "
                f"reminders; tick {c['tick_s']:.1f} s, of which {c['sending_s']:.1f} s from "
                "first to last arrival)", "< 5 ms, one email a person",
                c["per_message_ms"] < 5 and c["sent"] == send_cost.STAFF)

            p = pacing.run(db_url=new_url() if new_url else None)
            expected = p["expected_s"]
            row(db, "pacing, `max_per_minute = 600`: 300 messages take",
                f"{p['s']:.2f} s (gaps {p['shortest_gap_ms']:.0f} to "
                f"{p['longest_gap_ms']:.0f} ms; tick {p['tick_s']:.1f} s)", "30 s ± 5%",
                abs(p["s"] - expected) <= 0.05 * expected)
            row(db, "pacing: most messages in any 60-second window", str(p["most_in_60s"]),
                "≤ 600", p["most_in_60s"] <= 600)
            row(db, "pacing: most messages in any 1-second window", str(p["most_in_1s"]),
                "≤ 11", p["most_in_1s"] <= 11)
        dbs = list(found)

    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=root).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                           cwd=root).stdout.strip()
    print(f"\n| figure | target | {' | '.join(dbs)} |\n|---|---|{'---|' * len(dbs)}")
    for (name, target), by_db in figures.items():
        cells = [f"{f}{'' if ok else ' **MISS**'}"
                 for f, ok in (by_db.get(db, ("—", True)) for db in dbs)]
        print(f"| {name} | {target} | {' | '.join(cells)} |")
    load_after = os.getloadavg()
    print(f"\ncommit {commit}{' with uncommitted changes' if dirty else ''}, "
          f"{time.perf_counter() - started:.0f} s in all; load average "
          f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs)")
    ok = all(ok for by_db in figures.values() for _, ok in by_db.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
