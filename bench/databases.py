"""The databases `make bench` measures on: a SQLite file always, and PostgreSQL where its server
binaries are installed, on a throwaway cluster like the one the tests start (tests/pgcluster.py)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from pgcluster import PostgresCluster


class Postgres:
    """A running throwaway cluster: new_url() gives a fresh database's URL."""

    def __init__(self, cluster: PostgresCluster):
        self.cluster = cluster

    def new_url(self) -> str:
        return self.cluster.new_database()

    @contextmanager
    def statements(self, url: str) -> Iterator[list[int]]:
        """Counts the statements the server runs for the database at `url` inside the block, from
        its own log (log_statement = all, set for that database only)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        admin = url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET log_statement = \'all\'')
        log = self.cluster.folder / "log"
        start = log.stat().st_size
        counted: list[int] = []
        yield counted
        time.sleep(0.5)  # the logger writes behind
        text = log.read_bytes()[start:].decode("utf-8", "replace")
        counted.append(sum(1 for line in text.splitlines()
                           if "LOG:  statement: " in line or "LOG:  execute " in line))


@contextmanager
def available() -> Iterator[dict[str, Callable[[], str | None] | None]]:
    """{"SQLite": None, "PostgreSQL": Postgres} — PostgreSQL only where it can run here."""
    cluster = PostgresCluster()
    if not cluster.bin:
        print("PostgreSQL: no server binaries under /usr/lib/postgresql; measuring SQLite only",
              flush=True)
        yield {"SQLite": None}
        return
    cluster.start()
    try:
        yield {"SQLite": None, "PostgreSQL": Postgres(cluster)}
    finally:
        cluster.stop()
