"""The console at a local authority's scale: its people page at 50,000 staff, through Flask's test
client, signed in, on each database (best of three), and the size of the page it sends. Target:
under 300 ms and under 200 KB."""

from __future__ import annotations

import datetime as dt
import re
import time

from . import world

PASSWORD = "correct horse battery staple"


def run(staff: int = 50_000, db_url: str | None = None) -> dict[str, float]:
    from workflow.admin import accounts

    w = world.build(staff, requests_sent_at=world.OPEN, db_url=db_url)
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
        figures = {}
        for name, url in (("people", "/admin/people"),
                          ("people_by_status", "/admin/people?sort=status"),
                          ("people_search", "/admin/people?q=person%200123")):
            best, size = float("inf"), 0
            for _ in range(3):
                started = time.perf_counter()
                response = client.get(url)
                best = min(best, time.perf_counter() - started)
                assert response.status_code == 200, (url, response.status_code)
                size = len(response.get_data())
            figures[f"{name}_s"], figures[f"{name}_kb"] = best, size / 1024
        svc.db.dispose()
        return figures
    finally:
        w.remove()


if __name__ == "__main__":
    import sys

    for key, value in run(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000).items():
        print(f"{key}: {value * 1000:.0f} ms" if key.endswith("_s") else f"{key}: {value:.0f} KB")
