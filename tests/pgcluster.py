"""A throwaway PostgreSQL server for the tests and the benchmarks (bench/ imports it from here)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ports import free_port


class PostgresCluster:
    """A throwaway PostgreSQL server in a temporary folder, run as the `postgres` user when we are
    root (initdb refuses root). Each test gets its own database on it."""

    def __init__(self, root: str | None = None):
        """`root`: where its temporary folder goes (default: the system's temporary folder)."""
        self.bin = self._find_bin()
        self.url = os.environ.get("SIGNOFF_TEST_DATABASE_URL")
        self.root = root
        self.folder = None
        self._dropper: ThreadPoolExecutor | None = None
        self._drops: list[Future] = []
        self._names = itertools.count()

    @staticmethod
    def _find_bin() -> Path | None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if found:
            return Path(found[-1]).parent
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    @property
    def available(self) -> bool:
        return bool(self.url or self.bin)

    def _as_postgres(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def start(self, *settings: str) -> None:
        """Start it; `settings` are extra `name=value` server settings."""
        if self.url:
            return
        self.folder = Path(tempfile.mkdtemp(prefix="signoff-pg-", dir=self.root))
        os.chmod(self.folder, 0o777)
        data, port = self.folder / "data", free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        subprocess.run(self._as_postgres([str(self.bin / "initdb"), "-D", str(data), "-A", "trust",
                                          "-U", "postgres", "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True)
        options = (f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200" + "".join(f" -c {s}" for s in settings))
        subprocess.run(self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(data), "-o", options,
                                          "-l", str(self.folder / "log"), "-w", "start"]),
                       check=True, capture_output=True)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}"

    def stop(self) -> None:
        if self._dropper is not None:
            self._dropper.shutdown(wait=True)
            self._dropper = None
            for drop in self._drops:
                drop.result()  # raises what a drop raised
        if self.folder is None:
            return
        subprocess.run(self._as_postgres([str(self.bin / "pg_ctl"), "-D",
                                          str(self.folder / "data"), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def new_database(self) -> str:
        name = f"signoff_test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self._base()}/{name}"

    def drop_database(self, url: str) -> None:
        """Drop a database new_database() made, whoever is still connected to it, in the
        background: the server waits a tenth of a second for the connections it ends to go."""
        if self._dropper is None:
            self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-database")
        self._drops.append(self._dropper.submit(self._drop, url.rsplit("/", 1)[1]))

    def _drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _base(self) -> str:
        return self.url.rsplit("/", 1)[0] if self.url.count("/") > 2 else self.url

    def _admin(self):
        import psycopg

        admin = self._base().replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        return psycopg.connect(admin, autocommit=True)
