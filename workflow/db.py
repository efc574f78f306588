"""Engines and sessions, and the one place that knows SQLite from PostgreSQL.

SQLite gets WAL and a busy timeout, and writes that must not interleave start with
`BEGIN IMMEDIATE` so two ticks queue for the write lock instead of failing half-way.
"""

from __future__ import annotations

import datetime as dt
import json
import select as io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import (JSON, BindParameter, Column, Connection, Engine, String, any_, bindparam,
                        cast, column, create_engine, event, func, select)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList

from . import resources


# Connections each process keeps open: as many as `signoff serve` has threads by default, so a
# busy web server reuses its connections instead of opening (and on SQLite, setting up) a fresh
# one for a request whenever more than SQLAlchemy's default five are in use at once.
POOL_SIZE = 8


class DatabaseError(Exception):
    """The database cannot be used (unreachable, not initialised); the message says what to do."""


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
    def write(self) -> Iterator[Session]:
        """One short transaction holding the write lock (SQLite) from its first statement."""
        with self._writes() as session, session.begin():
            yield session

    @contextmanager
    def write_core(self) -> Iterator[Connection]:
        """Like write(), on a plain Connection: for the per-email statements, where the ORM's
        session machinery would cost more than the statements themselves."""
        with self._write_engine.begin() as conn:
            yield conn

    def raw_writer(self) -> RawWriter:
        """See RawWriter; close() it when done."""
        return RawWriter(self)

    def insert(self, table):
        """INSERT … ON CONFLICT DO NOTHING in this database's dialect."""
        dialect = sqlite if self.is_sqlite else postgresql
        # rowcount (how many rows went in) is only kept for an INSERT when asked for; else -1 on PG.
        return (dialect.insert(table).on_conflict_do_nothing()
                .execution_options(preserve_rowcount=True))

    def among(self, column, name: str):
        """`column IN (…)` the list given as parameter `name`. On PostgreSQL `column = ANY(…)` of
        one array: an IN of five hundred ids is a statement of five hundred placeholders, which
        SQLAlchemy renders and psycopg parses afresh for each execution (too long to cache)."""
        if self.is_sqlite:
            return column.in_(bindparam(name, expanding=True))
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))

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
        """The database answers and is migrated to this version's head (else: run `signoff init`)."""
        from alembic.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                current = set(MigrationContext.configure(conn).get_current_heads())
        except OperationalError as exc:
            raise DatabaseError(f"cannot open the database {_safe(self.url)}: {exc.orig}") from None
        if not current:
            raise DatabaseError(f"the database {_safe(self.url)} is not set up: run `signoff init`")
        if current != set(_script().get_heads()):
            raise DatabaseError(f"the database {_safe(self.url)} is from another version of signoff: "
                                "run `signoff init` to upgrade it")

    def dispose(self) -> None:
        self.engine.dispose()


class RawWriter:
    """Short write transactions on one DB-API connection held open, for the few statements a
    tick runs once per email sent (thousands on the opening day).

    Each Core statement is compiled once, by this database's dialect, and its parameters go
    through the same type conversions SQLAlchemy applies; what is skipped is SQLAlchemy's work per
    execution (a pool checkout, a cache lookup, result handling), which costs several times the
    statements themselves. Use `with writer.transaction(): writer.execute(statement, params)`,
    or `writer.execute(statement, params)` alone for one statement that is its own transaction.

    The connection runs in autocommit mode, each transaction opened and committed explicitly: a
    lone statement is then one round trip to PostgreSQL, not three (BEGIN, the statement, COMMIT).
    """

    def __init__(self, db: Database):
        self.db = db
        self.dbapi = db.engine.raw_connection()
        self.cursor = self.dbapi.cursor()
        if not db.is_sqlite:  # SQLite's connections are in autocommit mode already (see _engine)
            self.dbapi.driver_connection.autocommit = True
            # As SQLite's synchronous=NORMAL: a commit survives the process being killed, not the
            # database server losing power in the next moment; it does not wait for the disk.
            self.cursor.execute("SET synchronous_commit TO off")
        self._compiled: dict[tuple, tuple] = {}
        self.dialect = db.engine.dialect.name
        self._started = False  # a statement sent by start(), its result not yet read
        self._prepared: dict[tuple, tuple] = {}  # statements start() prepared on the server
        # start() and finish() run once per email: libpq's connection and psycopg's pq module
        # are kept at hand rather than looked up through the pool's wrappers each time.
        self._pgconn = None if db.is_sqlite else self.dbapi.driver_connection.pgconn
        self._pq = None
        if not db.is_sqlite:
            from psycopg import pq

            self._pq = pq

    @contextmanager
    def transaction(self) -> Iterator[RawWriter]:
        self.finish()
        # On SQLite, as write() does: the write lock from the start.
        self.cursor.execute("BEGIN IMMEDIATE" if self.db.is_sqlite else "BEGIN")
        try:
            yield self
        except BaseException:
            try:
                self.cursor.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 — already ended by the error; report that one
                pass
            raise
        self.cursor.execute("COMMIT")

    def start(self, statement, params: dict) -> None:
        """Run one statement as its own transaction, without waiting for it on PostgreSQL:
        finish() waits for it and raises its error, if any. Anything else done with the writer
        finishes it first.

        The sending loop starts each email's outcome as the mail server is given the next
        message's MAIL command and finishes it before that message's DATA: the database and the
        mail server work at once, and the outcome is still stored before anything more is sent.
        The statement goes to the server as a prepared one, straight through libpq (psycopg.pq),
        since a cursor has no way to send a statement and read its result later.
        """
        self.finish()
        if self.db.is_sqlite:  # in-process: done at once
            self.execute(statement, params)
            return
        name, convert = self._prepare_on_server(statement, params)
        pgconn = self._pgconn
        pgconn.send_query_prepared(name, convert(params))
        self._started = True
        while pgconn.flush():  # the connection is non-blocking: a full socket buffer
            io.select([], [pgconn.socket], [])

    def finish(self) -> None:
        """Wait for the statement start() sent (see there)."""
        if not self._started:
            return
        self._started = False
        pgconn = self._pgconn
        pgconn.consume_input()
        while pgconn.is_busy():
            io.select([pgconn.socket], [], [])
            pgconn.consume_input()
        error = None
        failed = self._pq.ExecStatus.FATAL_ERROR
        while (result := pgconn.get_result()) is not None:
            if error is None and result.status == failed:
                error = _error_of(result)
        if error is not None:
            raise error

    def _prepare_on_server(self, statement, params: dict):
        """(name, a function turning `params` into libpq's) of `statement` prepared on the server
        for start(), once for each statement and set of parameter names."""
        key = (statement, tuple(params))
        if key not in self._prepared:
            from psycopg.adapt import PyFormat, Transformer
            from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect

            # Compiled with libpq's own placeholders ($1, $2…) and the parameters in their order.
            sql, convert = self._compile(statement, params, psycopg_dialect(
                paramstyle="numeric_dollar"))
            name = f"signoff_{len(self._prepared)}".encode()
            result = self._pgconn.prepare(name, sql.encode())
            if result.status == self._pq.ExecStatus.FATAL_ERROR:
                raise _error_of(result)
            dump = Transformer.from_context(self.dbapi.driver_connection)
            formats = [PyFormat.TEXT] * len(convert(params))  # every parameter as text

            def to_server(values: dict) -> list:
                return dump.dump_sequence(convert(values), formats)

            self._prepared[key] = (name, to_server)
        return self._prepared[key]

    def execute(self, statement, params: dict) -> int:
        """Run one statement; returns how many rows it changed."""
        self.finish()
        sql, convert = self._prepare(statement, params)
        self.cursor.execute(sql, convert(params))
        return self.cursor.rowcount

    def rows(self, statement, params: dict) -> list[tuple]:
        """Run one statement and return its rows (for UPDATE … RETURNING)."""
        self.finish()
        sql, convert = self._prepare(statement, params)
        self.cursor.execute(sql, convert(params))
        return self.cursor.fetchall()

    def returning_ids(self, statement, rows: list[dict]) -> set[int]:
        """executemany() for a statement that returns ids (UPDATE … RETURNING id): all of them."""
        if not rows:
            return set()
        self.finish()
        if self.db.is_sqlite:  # in-process: a statement per row costs next to nothing
            sql, convert = self._prepare(statement, rows[0])
            found = set()
            for row in rows:
                self.cursor.execute(sql, convert(row))
                found.update(r[0] for r in self.cursor.fetchall())
            return found
        self._execute_over_rows(statement, rows)
        return {row[0] for row in self.cursor.fetchall()}

    def executemany(self, statement, rows: list[dict]) -> None:
        """Run `statement` for each of `rows` (dicts with the same keys).

        On PostgreSQL as one statement over the rows sent as one JSON document: `INSERT … SELECT
        … FROM json_to_recordset(…)`, or `UPDATE … FROM json_to_recordset(…)`. The server then
        plans and runs one statement for a batch of emails instead of fifty, which on the opening
        day is most of its work; and the document is made by the json module's C encoder, where
        an array per parameter was made element by element in Python (quoting each string with a
        regular expression). Rows an UPDATE gives more than once get one of their values: the
        caller passes each once.
        """
        if not rows:
            return
        self.finish()
        if self.db.is_sqlite:
            sql, convert = self._prepare(statement, rows[0])
            self.cursor.executemany(sql, [convert(row) for row in rows])
        else:
            self._execute_over_rows(statement, rows)

    def _execute_over_rows(self, statement, rows: list[dict]) -> None:
        names = tuple(rows[0])
        key = ("over rows", statement, names)
        if key not in self._compiled:
            over, encode = _over_rows(statement, names, self.db.engine.dialect)
            sql, convert = self._compile(over, {"rows": None})
            self._compiled[key] = (sql, convert, encode)
        sql, convert, encode = self._compiled[key]
        self.cursor.execute(sql, convert({"rows": encode(rows)}))

    def _prepare(self, statement, params: dict):
        """(SQL, a function turning `params` into the driver's parameters), built once for each
        statement and set of parameter names."""
        key = (statement, tuple(params))
        if key not in self._compiled:
            self._compiled[key] = self._compile(statement, params)
        return self._compiled[key]

    def _compile(self, statement, params: dict, dialect=None):
        dialect = dialect or self.db.engine.dialect
        compiled = statement.compile(dialect=dialect, column_keys=list(params))
        binds = compiled.bind_names  # BindParameter -> its name in the SQL
        defaults = {name: bind.effective_value for bind, name in binds.items() if not bind.required}
        processors = list({name: _remembered(process)  # a name used twice is converted once
                           for bind, name in binds.items()
                           if (process := bind.type.dialect_impl(dialect).bind_processor(dialect))
                           }.items())
        order = list(compiled.positiontup) if compiled.positional else None

        def convert(params: dict):
            values = {**defaults, **params}
            for name, process in processors:
                values[name] = process(values[name])
            return [values[name] for name in order] if order else values

        return str(compiled), convert

    def close(self) -> None:
        try:
            self.finish()
            if not self.db.is_sqlite:  # back to the pool as SQLAlchemy expects it
                for name, _ in self._prepared.values():
                    self.cursor.execute(f"DEALLOCATE {name.decode()}")
                self.cursor.execute("RESET synchronous_commit")
                self.dbapi.driver_connection.autocommit = False
            self.cursor.close()
        except Exception:  # noqa: BLE001 — a broken connection: not fit to go back to the pool
            self.dbapi.invalidate()
        finally:
            self.dbapi.close()


def _error_of(result):
    """The psycopg exception for a libpq result that failed, with its SQLSTATE's class."""
    from psycopg import errors, pq

    sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    message = result.error_message.decode("utf-8", "replace").strip()
    try:
        return errors.lookup(sqlstate)(message)
    except KeyError:
        return errors.DatabaseError(message)


def _over_rows(statement, names: tuple[str, ...], dialect):
    """`statement`, run once per row of parameters `names`, as one PostgreSQL statement that reads
    the rows from one JSON parameter (see RawWriter.executemany); and the function that encodes
    a list of rows as that parameter, each value converted as its type converts it for a bind."""
    if statement.is_insert:
        types = {name: statement.table.c[name].type for name in names}
    else:
        types = {}
        visitors.traverse(statement, {}, {"bindparam": lambda b: types.setdefault(b.key, b.type)})
    # Strings are read without a length: the column's own limit applies, as it would to a bind.
    declared = {name: String() if isinstance(types[name], String) else types[name]
                for name in names}
    document = cast(bindparam("rows", type_=String()), postgresql.JSON())

    def read(*read_names: str):
        return (func.json_to_recordset(document)
                .table_valued(*[column(name, declared[name]) for name in read_names])
                .render_derived(with_types=True))

    rows = read(*names)
    # Each value converted as for a bind, and a date or time on to the text PostgreSQL reads
    # (remembered: a batch has a handful of them, thousands of times). A JSON column's value goes
    # into the document as it is, not as a string of JSON.
    processors = [(name, _remembered(_as_json(types[name].dialect_impl(dialect)
                                              .bind_processor(dialect))))
                  for name in names if not isinstance(types[name], JSON)]

    def encode(values: list[dict]) -> str:
        values = [dict(row) for row in values]
        for row in values:
            for name, process in processors:
                row[name] = process(row[name])
        return json.dumps(values, separators=(",", ":"))

    if statement.is_insert:
        over = statement.from_select(list(names), select(*[rows.c[name] for name in names]))
    else:
        over = visitors.replacement_traverse(
            statement, {},
            lambda element: rows.c[element.key] if (isinstance(element, BindParameter)
                                                    and element.key in names) else None)
        # The rows to update are also named by key, as `id = ANY(ARRAY(…))`: the planner cannot
        # know how many rows the document holds (it assumes 100), and would rather read the
        # whole table for a join than look up each row, once for every batch of the opening day.
        for key_column, name in _keyed_by(statement, names):
            keys = read(name)
            over = over.where(key_column == func.any(func.array(
                select(keys.c[name]).scalar_subquery())))
    return over, encode


def _keyed_by(statement, names: tuple[str, ...]) -> list[tuple]:
    """(primary key column, parameter name) of each `key = :parameter` the UPDATE is filtered by."""
    where = statement.whereclause
    criteria = where.clauses if isinstance(where, BooleanClauseList) else [where]
    return [(criterion.left, criterion.right.key) for criterion in criteria
            if isinstance(criterion, BinaryExpression) and criterion.operator is operators.eq
            and isinstance(criterion.left, Column) and criterion.left.primary_key
            and isinstance(criterion.right, BindParameter) and criterion.right.key in names]


def _as_json(process):
    """A bind conversion (or none) followed by a date or time's turn into ISO 8601 text."""
    def convert(value):
        if process is not None:
            value = process(value)
        return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value

    return convert


def _remembered(process):
    """A bind conversion that remembers its last few datetimes: a tick's statements pass the same
    handful (its `now`, a due date) thousands of times, and each conversion formats a string."""
    seen: dict = {}

    def convert(value):
        if not isinstance(value, (dt.datetime, dt.date)):
            return process(value)
        if value not in seen:
            if len(seen) > 256:
                seen.clear()
            seen[value] = process(value)
        return seen[value]

    return convert


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
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            immediate = conn.get_execution_options().get("begin_immediate")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE)


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


def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def upgrade(url: str) -> None:
    """Run Alembic migrations to head (what `signoff init` does)."""
    from alembic import command

    cfg = _alembic_config()
    cfg.attributes["url"] = url
    command.upgrade(cfg, "head")
