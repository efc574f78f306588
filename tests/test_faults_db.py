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


def test_the_newest_migration_file_is_alembics_one_head():
    """`check_ready` (every command) knows the head from the file names, without Alembic."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from workflow import resources
    from workflow.db import head_revision

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.path("migrations")))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_heads() == [head_revision()]
    for revision in script.walk_revisions():  # each file is named after its revision
        assert revision.path.rsplit("/", 1)[1].startswith(f"{revision.revision}_")


def test_claims_lock_rows_the_way_each_database_needs(setup, db_url):
    from workflow import config as config_mod
    from workflow import library
    from workflow.db import Database
    from workflow.outbox import claim, enqueue

    config = config_mod.load(setup())
    db = Database(config.database.url)
    with db.read() as session:
        lib = library.load(session, config)
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
            claimed = claim(session, now + dt.timedelta(seconds=1), "worker-a", lib)
        with db.write() as session:
            again = claim(session, now + dt.timedelta(seconds=2), "worker-b", lib)
        with db.write() as session:  # once the lease has run out, another run may take it
            later = claim(session, now + dt.timedelta(minutes=16), "worker-c", lib)
    finally:
        db.dispose()

    assert claimed is not None and again is None  # the lease holds the row
    assert later is not None and later.id == claimed.id
    pick = next(s for s in statements if s.startswith("SELECT OUTBOX.ID"))
    update = next(s for s in statements if s.startswith("UPDATE OUTBOX"))
    assert re.search(r"RETURNING (OUTBOX\.)?ID\b", update)
    if db_url.startswith("sqlite"):
        assert statements[0] == "BEGIN IMMEDIATE"
        assert "FOR UPDATE" not in pick + update
    else:
        assert "FOR UPDATE SKIP LOCKED" in pick


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


def test_upgrading_makes_open_requests_overdue_the_day_after_their_date(db_url):
    """Before 0007 a request was overdue at the send time on the date its reminders asked for;
    from 0007, at the start of the next day in the setting's time zone. Open requests move, in
    summer time and in winter time alike; confirmed and exempt ones keep what they had."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from workflow.db import _alembic_config, upgrade

    cfg = _alembic_config()
    cfg.attributes["url"] = db_url
    command.upgrade(cfg, "0006")
    utc = dt.datetime  # stored as naive UTC
    stored = {  # staff email: (overdue_at as 0006 stored it, closed)
        "summer@example.org": (utc(2026, 9, 22, 7), False),      # Tue 22 Sep, 08:00 BST
        "half-past-midnight@example.org": (utc(2026, 9, 21, 23, 30), False),  # 22 Sep, 00:30 BST
        "clocks-back@example.org": (utc(2026, 10, 24, 7), False),  # Sat 24 Oct, 08:00 BST
        "winter@example.org": (utc(2026, 10, 30, 8), False),      # Fri 30 Oct, 08:00 GMT
        "exempt@example.org": (utc(2026, 9, 22, 7), True),
        "confirmed@example.org": (utc(2026, 9, 22, 7), True),
        "not-yet@example.org": (None, False),
    }
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            now = utc(2026, 9, 1, 7)
            setting = conn.execute(text("INSERT INTO setting (name, timezone) VALUES "
                                        "('Test Nursery', 'Europe/London') RETURNING id")).scalar()
            policy = conn.execute(text(
                "INSERT INTO policy (setting_id, slug, title) VALUES (:s, 'social-media', "
                "'Use of Social Media Policy') RETURNING id"), {"s": setting}).scalar()
            version = conn.execute(text(
                "INSERT INTO policy_version (policy_id, sha256, content, statements, created_at) "
                "VALUES (:p, :sha, 'text', '[]', :now) RETURNING id"),
                {"p": policy, "sha": "0" * 64, "now": now}).scalar()
            cycle = conn.execute(text(
                "INSERT INTO cycle (policy_id, year, opens_at, created_at) VALUES "
                "(:p, 2026, :now, :now) RETURNING id"), {"p": policy, "now": now}).scalar()
            for email, (overdue, closed) in stored.items():
                staff = conn.execute(text(
                    "INSERT INTO staff (setting_id, email, name, role, active, created_at, "
                    "updated_at) VALUES (:s, :email, :email, '', :yes, :now, :now) RETURNING id"),
                    {"s": setting, "email": email, "yes": True, "now": now}).scalar()
                request = conn.execute(text(
                    "INSERT INTO request (cycle_id, staff_id, created_at, stage_sent, reminded_at, "
                    "overdue_at, closed_at) VALUES (:c, :staff, :now, 0, :now, :overdue, :closed) "
                    "RETURNING id"), {"c": cycle, "staff": staff, "now": now, "overdue": overdue,
                                      "closed": now if closed else None}).scalar()
                if email.startswith("confirmed"):
                    conn.execute(text(
                        "INSERT INTO confirmation (request_id, confirmed_at, policy_version_id, "
                        "version_sha256, statements, method) VALUES (:r, :now, :v, :sha, '[]', "
                        "'self')"), {"r": request, "now": now, "v": version, "sha": "0" * 64})
        upgrade(db_url)
        read = text("SELECT staff.email, request.overdue_at FROM request "
                    "JOIN staff ON staff.id = request.staff_id")
        with engine.connect() as conn:
            after = dict(conn.execute(read).all())
        command.downgrade(cfg, "0006")
        with engine.connect() as conn:
            back = dict(conn.execute(read).all())
    finally:
        engine.dispose()

    def moment(value):  # SQLite hands back text, PostgreSQL a datetime
        return value if value is None or isinstance(value, dt.datetime) \
            else dt.datetime.fromisoformat(value)

    after = {email: moment(value) for email, value in after.items()}
    assert after == {
        "summer@example.org": utc(2026, 9, 22, 23),           # Wed 23 Sep, 00:00 BST
        "half-past-midnight@example.org": utc(2026, 9, 22, 23),
        "clocks-back@example.org": utc(2026, 10, 24, 23),     # Sun 25 Oct, 00:00 BST
        "winter@example.org": utc(2026, 10, 31, 0),           # Sat 31 Oct, 00:00 GMT
        "exempt@example.org": utc(2026, 9, 22, 7),
        "confirmed@example.org": utc(2026, 9, 22, 7),
        "not-yet@example.org": None,
    }
    # Downgrading keeps the date, at its start: the old rule's hour is in the config file only.
    back = {email: moment(value) for email, value in back.items()}
    assert back["summer@example.org"] == utc(2026, 9, 21, 23)  # Tue 22 Sep, 00:00 BST
    assert back["winter@example.org"] == utc(2026, 10, 30, 0)
    assert back["exempt@example.org"] == utc(2026, 9, 22, 7)
