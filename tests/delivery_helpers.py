"""Fixtures and readers shared by the delivery tests: a misbehaving SMTP server (smtp_faults),
a setting pointed at it, and the outbox and other tables read straight from the database."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import ROSTER, initialise, write_config
from smtp_faults import FaultServer


@pytest.fixture
def mail():
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def setting(tmp_path, db_url, mail, cli):
    """A configured setting pointed at the fault server (or `port`), roster imported."""
    def make(roster: str = ROSTER, port: int | None = None, timeout: int | None = None,
             mail_extra: str = "", **overrides) -> Path:
        path = write_config(tmp_path, db_url, port or mail.port, **overrides)
        text = path.read_text()
        if timeout is not None:
            text = text.replace("timeout_seconds = 5", f"timeout_seconds = {timeout}")
        path.write_text(text.replace("[mail]\n", "[mail]\n" + mail_extra))
        return initialise(cli, path, roster)

    return make


@contextmanager
def database(config: Path):
    """The setting's database, as the tick sees it, for a test to read or change behind its back."""
    from workflow import config as config_mod
    from workflow.db import Database

    db = Database(config_mod.load(config).database.url)
    try:
        yield db
    finally:
        db.dispose()


def outbox(config: Path) -> dict[str, object]:
    """The outbox rows by key, read straight from the database."""
    from workflow.models import Outbox

    return {row.key: row for row in table(config, Outbox)}


def table(config: Path, model) -> list:
    with database(config) as db, db.read() as session:
        return list(session.scalars(select(model)))


def by_address(rows) -> dict[str, object]:
    return {row.to_email: row for row in rows.values() if row.kind == "reminder"}


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def roster_of(addresses: list[str]) -> str:
    return "name,email\n" + "".join(f"Person {i:03},{a}\n" for i, a in enumerate(addresses))
