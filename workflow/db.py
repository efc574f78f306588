"""Engines and sessions, and the one place that knows SQLite from PostgreSQL.

SQLite gets WAL and a busy timeout, and writes that must not interleave start with
`BEGIN IMMEDIATE` so two ticks queue for the write lock instead of failing half-way.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from . import resources
from .errors import DatabaseError


# Connections each process keeps open: as many as `signoff serve` has threads by default, so a
# busy web server reuses its connections instead of opening (and on SQLite, setting up) a fresh
# one for a request whenever more than SQLAlchemy's default five are in use at once.
POOL_SIZE = 8


class Database:
    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = _engine(url)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise DatabaseError(f"[database] url: cannot use {_safe(url)!r}: {exc}") from None
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # PostgreSQL's reads run outside a transaction: under its READ COMMITTED each statement
        # takes its own snapshot anyway, and a page then costs one round trip, not three (BEGIN,
        # the query, the ROLLBACK when the session ends). SQLite keeps a read transaction, whose
        # snapshot in WAL mode holds across a session's statements.
        self._read_engine = self.engine if self.is_sqlite else self.engine.execution_options(
            isolation_level="AUTOCOMMIT")
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)
        self._streams = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(begin_immediate=True)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reads() as session:
            yield session

    def read_core(self) -> Connection:
        """read() as a plain Core connection, for a page that reads a few rows: `with
        db.read_core() as conn: …`."""
        return self._read_engine.connect()

    @contextmanager
    def read_streaming(self) -> Iterator[Session]:
        """A read in one transaction on both databases, for a long read that streams its rows
        (`yield_per`): PostgreSQL's server-side cursor needs a transaction to live in."""
        with self._streams() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One short transaction holding the write lock (SQLite) from its first statement."""
        with self._writes() as session, session.begin():
            yield session

    @contextmanager
    def write_core(self) -> Iterator[Connection]:
        """Like write(), on a plain Connection: for batches of Core statements (queueing an
        opening day), where the ORM's session machinery would cost more than the statements."""
        with self._write_engine.begin() as conn:
            yield conn

    def insert(self, table):
        """INSERT … ON CONFLICT DO NOTHING in this database's dialect."""
        dialect = sqlite if self.is_sqlite else postgresql
        # rowcount (how many rows went in) is only kept for an INSERT when asked for; else -1 on PG.
        return (dialect.insert(table).on_conflict_do_nothing()
                .execution_options(preserve_rowcount=True))

    def refresh_statistics(self, *tables: str) -> None:
        """ANALYZE `tables` on PostgreSQL, after a statement changed a large share of their rows.

        Its planner costs each query from these statistics, and autovacuum refreshes them only a
        minute or more later: on a new installation's first opening day the tables it is about to
        read thousands of times would look empty, and a lookup of 50 rows by id would read the
        whole table. SQLite's planner prefers an index without statistics and needs none.
        """
        if self.is_sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
            conn.commit()

    def check_ready(self) -> None:
        """The database answers and is migrated to this version's head (else: run `signoff init`).
        Read with one query, not through Alembic: every command asks, and should start fast."""
        try:
            conn = self.engine.connect()
        except OperationalError as exc:
            raise DatabaseError(f"cannot open the database {_safe(self.url)}: {exc.orig}") from None
        try:
            current = set(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        except DBAPIError:  # no such table: never migrated
            current = set()
        finally:
            conn.close()
        if not current:
            raise DatabaseError(f"the database {_safe(self.url)} is not set up: run `signoff init`")
        if current != {head_revision()}:
            raise DatabaseError(f"the database {_safe(self.url)} is from another version of signoff: "
                                "run `signoff init` to upgrade it")

    def dispose(self) -> None:
        self.engine.dispose()


def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=POOL_SIZE)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin").
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Every commit on disk before it returns, power cut included: an email's outcome is
            # durable before the next one goes (NORMAL, WAL's usual choice, may lose the last
            # commits on power loss, and with them the record that those emails went).
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            immediate = conn.get_execution_options().get("begin_immediate")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # No JIT: PostgreSQL compiles a query whose estimated cost is high (a count over 50,000 staff
    # and their requests), which costs the console's pages half a second each and gains nothing
    # on queries that run in tens of milliseconds.
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE,
                         connect_args={"options": "-c jit=off"})


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def _alembic_config():
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.path("migrations")))
    return cfg


def head_revision() -> str:
    """This version's newest migration. Each file in migrations/versions is named after its
    revision id (`0005_….py` is revision "0005"), and they follow one line; a test holds Alembic's
    own answer to this."""
    versions = resources.path("migrations") / "versions"
    return max(p.name.split("_", 1)[0] for p in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))



def upgrade(url: str) -> None:
    """Run Alembic migrations to head (what `signoff init` does)."""
    from alembic import command

    cfg = _alembic_config()
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")
