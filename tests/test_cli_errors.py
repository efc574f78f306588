"""Usage mistakes on the command line are one `signoff: …` line and exit 2, like every other error,
not click's three-line Usage / Try / Error block; `--help` and a bare group still show the help."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from conftest import run_signoff


def _one_line(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("signoff: "), result.stderr
    for needle in needles:
        assert needle in lines[0], result.stderr
    assert "Usage:" not in result.output and "Try " not in result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_plan_with_to_before_from(setup, cli):
    config = setup()
    _one_line(cli("plan", "--from", "2026-09-10", "--to", "2026-09-01", config=config),
              "--to must be after --from")


def test_a_date_that_is_not_a_date(setup, cli):
    config = setup()
    _one_line(cli("tick", "--at", "next tuesday", config=config),
              "--at", "'next tuesday' is not an ISO-8601 date or time")
    _one_line(cli("plan", "--from", "1 Sept", config=config), "--from", "'1 Sept'")
    _one_line(cli("report", "--format", "xml", config=config), "--format", "'xml'")


def test_other_usage_mistakes_say_where_to_look(setup, cli):
    config = setup()
    # (In-process the program is called `cli`; the real command's name is checked below.)
    _one_line(cli("staff", "import", config=config), "Missing argument 'FILE'",
              " staff import --help`")
    _one_line(cli("tikc", config=config), "No such command 'tikc'", "Did you mean 'tick'?")
    _one_line(cli("--colour", "tick", config=config), "No such option '--colour'", " --help`")


def test_a_database_from_another_version_says_to_run_init(setup, cli):
    config = setup()
    from workflow import config as config_mod
    from workflow.db import Database

    db = Database(config_mod.load(config).database.url)
    with db.write() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    db.dispose()
    result = cli("report", config=config)
    assert result.exit_code == 2
    assert "is from another version of signoff: run `signoff init` to upgrade it" in result.stderr


def test_help_still_works(tmp_path, cli):
    config = tmp_path / "signoff.toml"  # need not exist: help reads no config
    top = cli("--help", config=config)
    assert top.exit_code == 0 and "Usage: " in top.output and "tick" in top.output
    sub = cli("tick", "--help", config=config)
    assert sub.exit_code == 0 and "--at ISO-8601" in sub.output
    group = cli("admin", config=config)  # a group on its own: its help, as click shows it
    assert "remove" in group.output and "Traceback" not in group.output


@pytest.mark.slow
def test_one_line_from_the_real_command(setup):
    config = setup()
    done = run_signoff("plan", "--from", "2026-09-10", "--to", "2026-09-01", config=config)
    assert done.returncode == 2
    assert done.stderr.strip() == "signoff: --to must be after --from"
    missing = run_signoff("admin", "remove", config=config)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("signoff: Missing argument 'EMAIL'. "
                                      "(see `signoff admin remove --help`)")


def _imported(config, *args: str) -> set[str]:
    """The top-level packages `signoff <args>` imports, from Python's own -X importtime."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "workflow", *args],
                          capture_output=True, text=True, cwd=config.parent, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in done.stderr.splitlines() if line.startswith("import time:")}


def test_quick_commands_leave_the_web_and_mail_stacks_unimported(setup):
    """What makes `--version` and `report` start in a fraction of a second (bench/startup.py)."""
    config = setup()
    heavy = {"flask", "flask_mail", "flask_wtf", "flask_login", "jinja2", "waitress",
             "werkzeug", "apscheduler", "alembic", "markdown_it"}
    assert not _imported(config, "--version") & (heavy | {"sqlalchemy", "holidays"})
    assert not _imported(config, "--help") & (heavy | {"sqlalchemy", "holidays"})
    assert not _imported(config, "--config", str(config), "report") & heavy
