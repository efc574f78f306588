"""Usage mistakes on the command line are one `signoff: …` line and exit 2, like every other error,
not click's three-line Usage / Try / Error block; `--help` and a bare group still show the help."""

from __future__ import annotations

import pytest

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
