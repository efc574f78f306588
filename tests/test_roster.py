"""`signoff staff import`: all-or-nothing validation with every bad line reported by number, then a
case-insensitive upsert that never deletes anyone; `active=no` takes a person out of the cycle."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

from sqlalchemy import select

from workflow import config as config_mod
from workflow.db import Database
from workflow.models import Staff

START = {"amira@example.org": ("Amira Khan", True), "ben@example.org": ("Ben Lewis", True),
         "chloe@example.org": ("Chloe Evans", True)}


def stored(config: Path) -> dict[str, tuple]:
    """email -> (name, active, role, start_date), straight from the database."""
    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return {p.email: (p.name, p.active, p.role, p.start_date)
                    for p in session.scalars(select(Staff))}
    finally:
        db.dispose()


def names_and_active(config: Path) -> dict[str, tuple[str, bool]]:
    return {email: (name, active) for email, (name, active, _, _) in stored(config).items()}


def import_csv(cli, config: Path, text: str | bytes, name: str = "roster.csv"):
    path = config.parent / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return cli("staff", "import", str(path), config=config), path


def report_emails(cli, config: Path) -> list[str]:
    result = cli("report", "--format", "csv", config=config)
    assert result.exit_code == 0, result.output
    return [row["email"] for row in csv.DictReader(io.StringIO(result.stdout))]


def test_every_bad_line_reported_and_nothing_stored(setup, cli):
    config = setup()
    result, path = import_csv(cli, config, (
        "name,email,role,start_date,active\n"
        "Dan Price,dan@example.org,Cook,,yes\n"             # line 2: fine on its own
        "Erin Bad,erin@@example.org,,,\n"                   # line 3: bad address
        "   ,frank@example.org,,,\n"                        # line 4: empty name
        "Dan Again,DAN@Example.org,,,\n"                    # line 5: same address as line 2
        "Gina Date,gina@example.org,,2026-13-40,\n"         # line 6: bad start_date
        "Hal Active,hal@example.org,,,maybe\n"              # line 7: bad active
        "Amira Khan,amira@example.org,Practitioner,,no\n"   # line 8: fine (would deactivate)
    ))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.output
    problems = [line for line in result.stderr.splitlines() if f"{path}: line " in line]
    assert [int(line.split("line ")[1].split(":")[0]) for line in problems] == [3, 4, 5, 6, 7]
    assert "erin@@example.org" in problems[0]
    assert "name is empty" in problems[1]
    assert "line 2" in problems[2]  # the duplicate names the line it repeats
    assert "2026-13-40" in problems[3] and "start_date" in problems[3]
    assert "maybe" in problems[4] and "active" in problems[4]
    assert "nothing was imported" in result.stderr
    # Nothing stored: not Dan from the good line 2, and Amira still active.
    assert names_and_active(config) == START
    assert "dan@example.org" not in report_emails(cli, config)


def test_one_bad_line_among_many_good_stores_nothing(setup, cli):
    config = setup()
    good = "".join(f"Person {i},p{i}@example.org\n" for i in range(50))
    result, path = import_csv(cli, config, "name,email\n" + good + "Broken,not-an-address\n")
    assert result.exit_code == 2
    assert f"{path}: line 52:" in result.stderr
    assert names_and_active(config) == START


def test_names_and_roles_longer_than_the_console_takes_are_refused_by_line(setup, cli):
    config = setup()
    result, path = import_csv(cli, config, (
        "name,email,role\n"
        f"{'N' * 200},long.ok@example.org,{'R' * 100}\n"      # line 2: exactly the limits
        f"{'N' * 201},long.name@example.org,Cook\n"          # line 3
        f"Dan Price,long.role@example.org,{'R' * 101}\n"     # line 4
    ))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output
    assert f"{path}: line 3: name is longer than 200 characters" in result.stderr
    assert f"{path}: line 4: role is longer than 100 characters" in result.stderr
    assert "line 2" not in result.stderr and names_and_active(config) == START


def test_import_upserts_by_address_case_insensitively(setup, cli):
    config = setup()
    result, _ = import_csv(cli, config, (
        "name,email,role,start_date\n"
        "Amira Khan-Smith,AMIRA@Example.ORG,Deputy,\n"
        "Dan Price,Dan.Price@Example.org,Cook,2026-10-05\n"
    ))
    assert result.exit_code == 0, result.output
    assert "1 added, 1 updated" in result.stdout
    rows = stored(config)
    assert sorted(rows) == ["amira@example.org", "ben@example.org", "chloe@example.org",
                            "dan.price@example.org"]
    assert rows["amira@example.org"][:3] == ("Amira Khan-Smith", True, "Deputy")
    assert rows["dan.price@example.org"] == ("Dan Price", True, "Cook", dt.date(2026, 10, 5))

    again, _ = import_csv(cli, config, "name,email\nAmira Khan-Smith,amira@example.org\n")
    assert again.exit_code == 0
    assert "0 added, 0 updated" in again.stdout and "1 unchanged" in again.stdout
    assert stored(config)["amira@example.org"][2] == "Deputy"  # columns left out are kept


def test_names_are_stripped_of_control_characters(setup, cli, smtp):
    config = setup()
    result, _ = import_csv(cli, config, (
        'name,email\n'
        '"Eve\r\nBcc: victim@evil.example",eve@example.org\n'
        '"Zed\x07\tZero\u200b",zed@example.org\n'
    ))
    assert result.exit_code == 0, result.output
    rows = stored(config)
    eve, zed = rows["eve@example.org"][0], rows["zed@example.org"][0]
    assert eve == "Eve Bcc: victim@evil.example"
    assert zed == "Zed Zero"
    for name in (eve, zed):
        assert not any(ch in name for ch in "\r\n\t\x07\u200b")


def test_people_missing_from_a_later_import_are_kept(setup, cli):
    config = setup()
    result, _ = import_csv(cli, config, "name,email\nAmira Khan,amira@example.org\n")
    assert result.exit_code == 0, result.output
    assert names_and_active(config) == START


def test_active_no_takes_a_person_out_of_mail_and_report(setup, cli, smtp):
    config = setup()
    result, _ = import_csv(cli, config, "name,email,active\nBen Lewis,ben@example.org,no\n")
    assert result.exit_code == 0, result.output
    assert "1 made inactive" in result.stdout
    assert names_and_active(config)["ben@example.org"] == ("Ben Lewis", False)

    tick = cli("tick", "--at", "2026-09-01T09:00+01:00", config=config)
    assert tick.exit_code == 0, tick.output
    assert smtp.inbox.to("ben@example.org") == []
    assert len(smtp.inbox.to("amira@example.org")) == 1
    assert sorted(report_emails(cli, config)) == ["amira@example.org", "chloe@example.org"]

    # Back again with active=yes: the next tick asks them.
    back, _ = import_csv(cli, config, "name,email,active\nBen Lewis,ben@example.org,yes\n")
    assert back.exit_code == 0
    assert cli("tick", "--at", "2026-09-02T09:00+01:00", config=config).exit_code == 0
    assert len(smtp.inbox.to("ben@example.org")) == 1


def test_inactive_after_first_reminder_gets_no_follow_up(setup, cli, smtp):
    config = setup()
    assert cli("tick", "--at", "2026-09-01T09:00+01:00", config=config).exit_code == 0
    assert len(smtp.inbox.to("ben@example.org")) == 1
    import_csv(cli, config, "name,email,active\nBen Lewis,ben@example.org,false\n")
    assert cli("tick", "--at", "2026-09-08T09:00+01:00", config=config).exit_code == 0
    assert len(smtp.inbox.to("ben@example.org")) == 1
    assert len(smtp.inbox.to("amira@example.org")) == 2  # the follow-up still goes to the others


def test_missing_file_is_one_line_exit_2(setup, cli, tmp_path):
    config = setup()
    missing = tmp_path / "nowhere.csv"
    result = cli("staff", "import", str(missing), config=config)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_non_utf8_file(setup, cli):
    config = setup()
    result, path = import_csv(cli, config, "name,email\nZoë Brown,zoe@example.org\n".encode("latin-1"))
    assert result.exit_code == 2
    assert str(path) in result.stderr and "UTF-8" in result.stderr
    assert "Traceback" not in result.output
    assert names_and_active(config) == START


def test_utf8_with_bom_from_excel_is_fine(setup, cli):
    config = setup()
    result, _ = import_csv(cli, config, "\ufeffname,email\nZoë Brown,zoe@example.org\n".encode())
    assert result.exit_code == 0, result.output
    assert stored(config)["zoe@example.org"][0] == "Zoë Brown"


def test_missing_columns(setup, cli):
    config = setup()
    result, path = import_csv(cli, config, "full name,address\nZoe,zoe@example.org\n")
    assert result.exit_code == 2
    assert (f"{path}: line 1: no column for email; the columns are 'full name', 'address'"
            in result.stderr)
    assert names_and_active(config) == START


def test_empty_file(setup, cli):
    config = setup()
    result, path = import_csv(cli, config, "")
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert "Traceback" not in result.output


def test_import_before_init_says_to_run_init(tmp_path, db_url, smtp, cli):
    from conftest import write_config

    config = write_config(tmp_path, db_url, smtp.port)
    result, _ = import_csv(cli, config, "name,email\nAmira Khan,amira@example.org\n")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "signoff init" in lines[0]


# --- the staff list as schools export it (real files in tests/rosters/) ------------------------

ROSTERS = Path(__file__).parent / "rosters"


def people(config: Path) -> dict[str, Staff]:
    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            return {p.email: p for p in session.scalars(select(Staff))}
    finally:
        db.dispose()


def test_an_mis_export_with_its_own_headings_and_extra_columns_imports(setup, cli):
    config = setup()
    result = cli("staff", "import", str(ROSTERS / "mis_export.csv"), config=config)
    assert result.exit_code == 0, result.output
    assert ("columns: first name from 'First Name', last name from 'Last Name', email from "
            "'Email Address', role from 'Job Title', start date from 'Start Date'; "
            "ignored: 'Staff ID', 'Title', 'Phone'") in result.output
    assert "1 added, 2 updated, 0 made inactive" in result.output
    stored = people(config)
    dana = stored["dana@example.org"]
    assert (dana.name, dana.first_name, dana.role, dana.start_date) == \
        ("Dana Walker", "Dana", "Cook", dt.date(2026, 11, 2))
    assert stored["amira@example.org"].start_date == dt.date(2019, 9, 1)  # 01/09/2019: DD/MM
    assert stored["chloe@example.org"].active  # not in the file, but not a full list


def test_an_excel_file_with_a_byte_order_mark_semicolons_and_known_as_names(setup, cli):
    config = setup()
    result = cli("staff", "import", str(ROSTERS / "hr_excel_semicolons.csv"), config=config)
    assert result.exit_code == 0, result.output
    stored = people(config)
    assert len(stored) == 4  # AMIRA@example.org is Amira: one person
    ben = stored["ben@example.org"]
    assert (ben.name, ben.first_name, ben.groups) == ("Benjamin Lewis", "Ben", ("teaching",))
    assert stored["amira@example.org"].groups == ("teaching", "first aid")
    chloe = stored["chloe@example.org"]
    assert (chloe.name, chloe.first_name, chloe.role) == \
        ("Chloé Évans", "Chloé", "Teacher; Early Years")
    assert stored["dana@example.org"].start_date == dt.date(2026, 11, 2)


def test_a_tab_separated_export_with_leavers_marked_inactive(setup, cli):
    config = setup()
    result = cli("staff", "import", str(ROSTERS / "staff_tabs.tsv"), config=config)
    assert result.exit_code == 0, result.output
    assert "ignored: 'Notes'" in result.output
    assert "made inactive (line 3): Ben Lewis <ben@example.org>" in result.output
    assert not people(config)["ben@example.org"].active


def test_a_full_staff_list_makes_everyone_missing_from_it_inactive_and_says_who(setup, cli):
    config = setup()
    result = cli("staff", "import", "--full", str(ROSTERS / "mis_export.csv"), config=config)
    assert result.exit_code == 0, result.output
    assert "1 added, 2 updated, 1 made inactive, 0 unchanged" in result.output
    assert ("made inactive (not in the full list): Chloe Evans <chloe@example.org>"
            in result.output)
    stored = people(config)
    assert not stored["chloe@example.org"].active and stored["dana@example.org"].active


def test_a_dry_run_says_what_would_change_and_stores_nothing(setup, cli):
    config = setup()
    before = stored(config)
    result = cli("staff", "import", "--full", "--dry-run", str(ROSTERS / "mis_export.csv"),
                 config=config)
    assert result.exit_code == 0, result.output
    assert "dry run, nothing stored; would be 1 added, 2 updated, 1 made inactive" in result.output
    assert "added (line 4): Dana Walker <dana@example.org>" in result.output
    assert "updated (line 2): amira@example.org: role Practitioner → Nursery Practitioner; " \
           "start date — → 2019-09-01" in result.output
    assert "made inactive (not in the full list): Chloe Evans" in result.output
    assert stored(config) == before


def test_a_missing_column_names_the_columns_the_file_has(setup, cli):
    config = setup()
    result = cli("staff", "import", str(ROSTERS / "unknown_headings.csv"), config=config)
    assert result.exit_code == 2
    assert ("no column for email or name (or first name and last name); the columns are "
            "'Person', 'Contact', 'Post'") in result.stderr
    assert names_and_active(config) == START
