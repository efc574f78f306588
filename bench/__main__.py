"""`make bench`: every figure from issue 3 with its target and PASS/MISS, measured on this machine,
on SQLite and (where its server binaries are installed) on PostgreSQL.

Not part of `make test`. Each benchmark builds its own throwaway setting with bulk-inserted staff,
and talks to real processes: an aiosmtpd sink, `signoff serve`, a PostgreSQL server.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from . import databases, digest, idle, memory, throughput, web


def main() -> int:
    started = time.perf_counter()
    rows: list[tuple[str, str, str, str, bool]] = []

    def row(db: str, name: str, figure: str, target: str, ok: bool) -> None:
        rows.append((db, name, figure, target, ok))
        print(f"{'PASS' if ok else 'MISS'}  [{db}] {name}: {figure} (target {target})", flush=True)

    with databases.available() as found:
        for db, postgres in found.items():
            new_url = postgres.new_url if postgres else None

            t = throughput.run(db_url=new_url)
            row(db, "send throughput, 5,000 staff",
                f"floor/tick = {t['ratio']:.2f} (tick {t['tick_s']:.1f} s, floor "
                f"{t['floor_s']:.1f} s, {t['per_message_ms']:.2f} ms/message; median of "
                f"{', '.join(map(str, t['ratios']))})", "≥ 0.8", t["ratio"] >= 0.8)

            i = idle.run(postgres)
            row(db, "idle tick, 50,000 staff", f"{i['s_50000'] * 1000:.0f} ms", "< 200 ms",
                i["s_50000"] < 0.2)
            row(db, "idle tick SQL statements", f"{i['statements_5000']} at 5,000 staff, "
                f"{i['statements_50000']} at 50,000", "no growth",
                i["statements_50000"] <= i["statements_5000"])

            m = memory.run(db_url=new_url() if new_url else None)
            row(db, "opening-day tick, 50,000 staff, peak RSS", f"{m['peak_mb']:.0f} MB "
                f"({m['tick_process_mb']:.0f} MB tick + {m['helper_mb']:.0f} MB in "
                f"{m['children']} helper process{'' if m['children'] == 1 else 'es'}; "
                f"tick {m['tick_s']:.0f} s)",
                "< 300 MB", m["peak_mb"] < 300)

            w = web.run(db_url=new_url() if new_url else None)
            row(db, "confirmation page vs /healthz, 8 clients", f"{w['ratio']:.2f} "
                f"({w['page_rps']:.0f} vs {w['healthz_rps']:.0f} req/s)", "≥ 0.6",
                w["ratio"] >= 0.6)
            row(db, "confirmation page p99", f"{w['page_p99_ms']:.0f} ms", "< 50 ms",
                w["page_p99_ms"] < 50)

            d = digest.run(db_url=new_url() if new_url else None)
            row(db, "digest with 5,000 overdue people", f"{d['s'] * 1000:.0f} ms", "< 1 s",
                d["s"] < 1)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent).stdout.strip() or "unknown"
    print("\n| database | figure | measured | target | |\n|---|---|---|---|---|")
    for db, name, figure, target, ok in rows:
        print(f"| {db} | {name} | {figure} | {target} | {'PASS' if ok else 'MISS'} |")
    print(f"\ncommit {commit}, {time.perf_counter() - started:.0f} s in all")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
