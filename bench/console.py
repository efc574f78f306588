"""The console at a local authority's scale: its pages at 50,000 staff and three policies, each
person asked for each, through Flask's test client, signed in, on each database (best of three),
and the size of the page it sends. Target: under 300 ms and under 200 KB; the evidence CSV, which
has everyone, under 300 ms to its first byte (it streams)."""

from __future__ import annotations

import datetime as dt
import re
import time

from . import world

PASSWORD = "correct horse battery staple"


PAGES = (("people", "/admin/people"),
         ("people_by_status", "/admin/people?sort=status"),
         ("people_search", "/admin/people?q=person%200123"),
         ("dashboard", "/admin/"),
         ("person", "/admin/people/{person}"),
         ("schedule", "/admin/schedule"),
         ("policies", "/admin/policies"),
         ("evidence", "/admin/evidence"),
         ("evidence_cycle", "/admin/evidence/{cycle}"),
         ("evidence_csv", "/admin/evidence/{cycle}/export.csv"))
POLICIES = 3


def run(staff: int = 50_000, db_url: str | None = None,
        pages: tuple = PAGES) -> dict[str, float]:
    from sqlalchemy import select

    from workflow.admin import accounts
    from workflow.models import Cycle, Staff

    w = world.build(staff, requests_sent_at=world.OPEN, db_url=db_url, policies=POLICIES)
    try:
        app = w.app()
        svc = app.extensions["signoff"]
        accounts.add(svc, "office@example.org", PASSWORD, dt.datetime.now(dt.timezone.utc))
        app.config["TESTING"] = False
        client = app.test_client()
        page = client.get("/admin/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]
        signed = client.post("/admin/login", data={"csrf_token": token, "email": "office@example.org",
                                                   "password": PASSWORD})
        assert signed.status_code == 303, signed.status_code
        with svc.db.read() as session:
            ids = {"person": session.scalar(select(Staff.id).limit(1)),
                   "cycle": session.scalar(select(Cycle.id).limit(1))}
        figures = {}
        for name, url in pages:
            url = url.format(**ids)
            best, size, first_byte = float("inf"), 0, float("inf")
            for _ in range(3):
                started = time.perf_counter()
                response = client.get(url, buffered=False)
                first = next(iter(response.response), b"")
                first_byte = min(first_byte, time.perf_counter() - started)
                body = first + b"".join(response.response)
                best = min(best, time.perf_counter() - started)
                response.close()
                assert response.status_code == 200, (url, response.status_code)
                size = len(body)
            figures[f"{name}_s"], figures[f"{name}_kb"] = best, size / 1024
            figures[f"{name}_first_s"] = first_byte
        svc.db.dispose()
        return figures
    finally:
        w.remove()


if __name__ == "__main__":
    import sys

    for key, value in run(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000).items():
        print(f"{key}: {value * 1000:.0f} ms" if key.endswith("_s") else f"{key}: {value:.0f} KB")
