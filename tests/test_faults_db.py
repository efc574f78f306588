"""The database side of delivery, on both databases: `signoff init` is idempotent (migrations
included), and a claim is the statement the design promises — `FOR UPDATE SKIP LOCKED` on
PostgreSQL, `BEGIN IMMEDIATE` then `UPDATE … RETURNING` on SQLite — seen as the SQL actually sent."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import event, func, select

from conftest import at


def test_init_twice_is_idempotent(setup, cli):
    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Policy, PolicyVersion

    config = setup()
    again = cli("init", config=config)
    assert again.exit_code == 0, again.output
    db = Database(config_mod.load(config).database.url)
    try:
        db.check_ready()
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Policy)) == 1
            assert session.scalar(select(func.count()).select_from(PolicyVersion)) == 1
    finally:
        db.dispose()


def test_migrations_build_the_schema_the_models_describe(setup):
    """Every index and column the code relies on is made by a migration, on both databases."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Base

    db = Database(config_mod.load(setup()).database.url)
    try:
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()
    assert differences == []


def test_claims_lock_rows_the_way_each_database_needs(setup, db_url):
    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.outbox import claim, enqueue

    db = Database(config_mod.load(setup()).database.url)
    statements: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def capture(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()).upper())

    now = at("2026-09-01 08:00")
    try:
        with db.write() as session:
            enqueue(session, db.insert, key="test:1", kind="alert", to_email="a@example.org",
                    to_name="", now=now, payload={})
        statements.clear()
        with db.write() as session:
            claimed = claim(session, now + dt.timedelta(seconds=1), "worker-a")
        with db.write() as session:
            again = claim(session, now + dt.timedelta(seconds=2), "worker-b")
    finally:
        db.dispose()

    assert len(claimed) == 1 and again == []  # the lease holds the row
    update = next(s for s in statements if s.startswith("UPDATE OUTBOX"))
    assert re.search(r"RETURNING (OUTBOX\.)?ID\b", update)
    if db_url.startswith("sqlite"):
        assert statements[0] == "BEGIN IMMEDIATE"
        assert "FOR UPDATE" not in update
    else:
        assert "FOR UPDATE SKIP LOCKED" in update


def test_a_statement_started_and_not_waited_for_reports_its_own_error(setup):
    """RawWriter.start() (each email's outcome, stored while the next is on the wire): a failing
    statement raises its own database error, at the latest when it is waited for, and the writer
    goes on working."""
    import sqlite3

    from sqlalchemy import insert

    from workflow import config as config_mod
    from workflow.db import Database
    from workflow.models import Outbox

    db = Database(config_mod.load(setup()).database.url)
    writer = db.raw_writer()
    now = dt.datetime(2026, 9, 1, 8, tzinfo=dt.timezone.utc)

    def row(key: str) -> dict:
        return {"key": key, "kind": "alert", "to_email": "office@example.org", "to_name": "",
                "created_at": now, "status": "pending", "attempts": 0, "next_attempt_at": now}

    errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    if not db.is_sqlite:
        import psycopg

        errors = (psycopg.errors.UniqueViolation,)
    try:
        writer.start(insert(Outbox.__table__), row("a"))
        writer.finish()
        try:
            writer.start(insert(Outbox.__table__), row("a"))  # the same key again
            writer.finish()
        except errors:
            pass
        else:
            raise AssertionError("a second row with the same key was stored")
        writer.start(insert(Outbox.__table__), row("b"))
        writer.execute(insert(Outbox.__table__), row("c"))  # waits for "b" first
        with db.read() as session:
            assert sorted(session.scalars(select(Outbox.key))) == ["a", "b", "c"]
    finally:
        writer.close()
        db.dispose()
