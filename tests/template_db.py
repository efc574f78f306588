"""A migrated, empty database made once per engine per test session and copied for each test that
sets up a setting: running the migrations costs tenths of a second a test, a copy milliseconds.
`signoff init` and the roster import then run for real on the copy, as on any installation (its
schema is at head already, so init only loads the policies). SQLite copies the file; PostgreSQL
makes the test's database with CREATE DATABASE … TEMPLATE."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path


class Templates:
    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="signoff-templates-"))
        self._sqlite: Path | None = None
        self._postgres: dict[str, str] = {}  # server URL -> template database's name

    def copy(self, url: str) -> None:
        """Make the empty database at `url` a migrated one; anything else is left for init."""
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            self._copy_sqlite(Path(url[len("sqlite:///"):]))
        elif url.startswith("postgresql") and "?" not in url:
            self._copy_postgres(url)

    def _copy_sqlite(self, target: Path) -> None:
        if any(Path(f"{target}{end}").exists() for end in ("", "-wal", "-shm", "-journal")):
            return  # a database there already: init upgrades it
        if self._sqlite is None:
            from workflow.db import upgrade

            path = self.folder / "signoff.db"
            upgrade(f"sqlite:///{path}")
            conn = sqlite3.connect(path)  # everything in the main file, nothing left in a WAL
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.close()
            self._sqlite = path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._sqlite, target)

    def _copy_postgres(self, url: str) -> None:
        import psycopg

        server, name = url.rsplit("/", 1)
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            if conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                            ).fetchone()[0]:
                return  # not empty: init upgrades it
        with psycopg.connect(_libpq(f"{server}/postgres"), autocommit=True) as admin:
            if server not in self._postgres:
                from workflow.db import upgrade

                template = f"signoff_template_{os.getpid()}_{len(self._postgres)}"
                admin.execute(f'DROP DATABASE IF EXISTS "{template}"')
                admin.execute(f'CREATE DATABASE "{template}"')
                upgrade(f"{server}/{template}")
                self._postgres[server] = template
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._postgres[server]}"')

    def close(self) -> None:
        import psycopg

        for server, template in self._postgres.items():
            try:  # on a server of SIGNOFF_TEST_DATABASE_URL's; the throwaway one is gone already
                with psycopg.connect(_libpq(f"{server}/postgres"), autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{template}"')
            except psycopg.OperationalError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")
