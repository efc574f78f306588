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
        with db.write() as session:  # once the lease has run out, another run may take it
            later = claim(session, now + dt.timedelta(minutes=16), "worker-c")
    finally:
        db.dispose()

    assert claimed is not None and again is None  # the lease holds the row
    assert later is not None and later.id == claimed.id
    update = next(s for s in statements if s.startswith("UPDATE OUTBOX"))
    assert re.search(r"RETURNING (OUTBOX\.)?ID\b", update)
    if db_url.startswith("sqlite"):
        assert statements[0] == "BEGIN IMMEDIATE"
        assert "FOR UPDATE" not in update
    else:
        assert "FOR UPDATE SKIP LOCKED" in update


def test_upgrading_turns_rows_the_old_send_loop_left_handed_into_sent(db_url):
    """The send loop before 0004 marked a message `handed` once the server took it, and wrote
    what followed later; a row left so was taken by the server, and must never be sent again."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from workflow.db import _alembic_config, upgrade

    cfg = _alembic_config()
    cfg.attributes["url"] = db_url
    command.upgrade(cfg, "0003")
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            for key, status in (("req:1:reminder", "handed"), ("req:2:reminder", "pending")):
                conn.execute(text(
                    "INSERT INTO outbox (key, kind, to_email, to_name, created_at, status, "
                    "attempts, next_attempt_at, claimed_until, sent_at) VALUES (:key, 'alert', "
                    "'office@example.org', '', :now, :status, 1, :now, :now, :sent)"),
                    {"key": key, "status": status, "now": dt.datetime(2026, 9, 1, 7),
                     "sent": dt.datetime(2026, 9, 1, 7) if status == "handed" else None})
        upgrade(db_url)
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT key, status FROM outbox")).all())
            held = conn.execute(text("SELECT claimed_until FROM outbox WHERE key = 'req:1:reminder'"))
            assert held.scalar_one() is None
    finally:
        engine.dispose()
    assert rows == {"req:1:reminder": "sent", "req:2:reminder": "pending"}
