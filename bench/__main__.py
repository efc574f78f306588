"""`make bench`: every figure from issue 3 with its target and PASS/MISS, measured on this machine.

Not part of `make test`. Each benchmark builds its own throwaway SQLite setting with bulk-inserted
staff, and talks to real processes: an aiosmtpd sink, `signoff serve`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from . import digest, idle, memory, throughput, web


def main() -> int:
    started = time.perf_counter()
    rows: list[tuple[str, str, str, bool]] = []

    def row(name: str, figure: str, target: str, ok: bool) -> None:
        rows.append((name, figure, target, ok))
        print(f"{'PASS' if ok else 'MISS'}  {name}: {figure} (target {target})", flush=True)

    t = throughput.run()
    row("send throughput, 5,000 staff", f"floor/tick = {t['ratio']:.2f} (tick {t['tick_s']:.1f} s, "
        f"floor {t['floor_s']:.1f} s, {t['per_message_ms']:.2f} ms/message; median of "
        f"{', '.join(map(str, t['ratios']))})", "≥ 0.8",
        t["ratio"] >= 0.8)

    i = idle.run()
    row("idle tick, 50,000 staff", f"{i['s_50000'] * 1000:.0f} ms", "< 200 ms", i["s_50000"] < 0.2)
    row("idle tick SQL statements", f"{i['statements_5000']} at 5,000 staff, "
        f"{i['statements_50000']} at 50,000", "no growth",
        i["statements_50000"] <= i["statements_5000"])

    m = memory.run()
    row("opening-day tick, 50,000 staff, peak RSS", f"{m['peak_mb']:.0f} MB "
        f"({m['tick_process_mb']:.0f} MB tick + {m['helper_mb']:.0f} MB composing helper; "
        f"tick {m['tick_s']:.0f} s)", "< 300 MB", m["peak_mb"] < 300)

    w = web.run()
    row("confirmation page vs /healthz, 8 clients", f"{w['ratio']:.2f} ({w['page_rps']:.0f} vs "
        f"{w['healthz_rps']:.0f} req/s)", "≥ 0.6", w["ratio"] >= 0.6)
    row("confirmation page p99", f"{w['page_p99_ms']:.0f} ms", "< 50 ms", w["page_p99_ms"] < 50)

    d = digest.run()
    row("digest with 5,000 overdue people", f"{d['s'] * 1000:.0f} ms", "< 1 s", d["s"] < 1)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent).stdout.strip() or "unknown"
    print("\n| figure | measured | target | |\n|---|---|---|---|")
    for name, figure, target, ok in rows:
        print(f"| {name} | {figure} | {target} | {'PASS' if ok else 'MISS'} |")
    print(f"\ncommit {commit}, {time.perf_counter() - started:.0f} s in all")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
