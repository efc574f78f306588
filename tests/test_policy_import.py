"""`signoff policy import FILE.toml [--dry-run]`, the inverse of `policy export`, on both
databases: a round trip changes nothing; a file that changes a schedule, adds a policy, proposes a
new text and replaces the closures says what it changes in the coming emails, and a dry run stores
none of it; a bad file exits 2 naming the key."""

from __future__ import annotations

import tomllib

import time_machine

from conftest import at
from workflow.models import Policy, PolicyVersion

NEW_POLICY = '''
[[policy]]
slug = "lone-working"
title = "Lone Working Policy"
text = """# Lone Working Policy

Tell the office before you work alone on site.
"""
statements = ["I tell the office before I work alone."]
'''


def _export(cli, config) -> str:
    result = cli("policy", "export", config=config)
    assert result.exit_code == 0, result.output
    return result.output


def test_an_exported_library_imports_back_unchanged(setup, cli, smtp, tmp_path):
    config = setup()
    exported = _export(cli, config)
    path = tmp_path / "library.toml"
    path.write_text(exported)
    result = cli("policy", "import", str(path), config=config)
    assert result.exit_code == 0, result.output
    assert "nothing in the library changed" in result.output
    assert "no change to the coming emails" in result.output
    assert _body(_export(cli, config)) == _body(exported)


def _body(exported: str) -> dict:
    return tomllib.loads(exported)


def test_an_import_says_what_changes_in_the_coming_emails_and_a_dry_run_stores_nothing(
        setup, cli, smtp, tmp_path, db_url):
    config = setup()
    assert cli("tick", "--at", at("2026-09-01 09:00").isoformat(), config=config).exit_code == 0
    tables = tomllib.loads(_export(cli, config))
    policy = tables["policy"][0]
    policy["schedule"] = {"reminder_after_days": [5, 10]}
    policy["text"] += "\n## 7. Photographs\n\nNever post a photograph of a child.\n"
    policy["change"] = "minor"
    policy["note"] = "A section on photographs."
    import tomli_w

    body = tomli_w.dumps({"schedule": tables["schedule"], "policy": [policy],
                          "closure": [{"name": "Staff training", "from": "2026-09-07",
                                       "to": "2026-09-07"}]}, multiline_strings=True)
    path = tmp_path / "library.toml"
    path.write_text(body + NEW_POLICY)
    before = _export(cli, config)
    with time_machine.travel(at("2026-09-02 10:00"), tick=False):
        dry = cli("policy", "import", str(path), "--dry-run", config=config)
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing stored" in dry.output
    assert "lone-working: added" in dry.output
    assert "social-media: schedule; a new text proposed (minor)" in dry.output
    assert "closures replaced: 1 now; Staff training 7 Sep 2026 to 7 Sep 2026" in dry.output
    # Follow-up 1, 5 days on, still goes on Tue 8 Sep (Sunday 6th, then the closed Monday), now
    # naming Wed 23 Sep (the closed day does not count); follow-up 2, 10 open days on, moves from
    # Tue 15 to Mon 14 Sep; the new policy's first reminders go with the next tick.
    assert "- Tue 8 Sep 2026 08:00  follow-up 1 [social-media] to 3 people, confirm by Tue 22 Sep" \
        in dry.output, dry.output
    assert "+ Tue 8 Sep 2026 08:00  follow-up 1 [social-media] to 3 people, confirm by Wed 23 Sep" \
        in dry.output
    assert "- Tue 15 Sep 2026 08:00  follow-up 2 [social-media]" in dry.output
    assert "+ Mon 14 Sep 2026 08:00  follow-up 2 [social-media]" in dry.output
    assert "first reminder [lone-working] to 3 people" in dry.output
    assert _export(cli, config) == before  # nothing stored
    with time_machine.travel(at("2026-09-02 10:00"), tick=False):
        done = cli("policy", "import", str(path), config=config)
    assert done.exit_code == 0, done.output
    assert done.output.replace("dry run: nothing stored", "") != dry.output
    after = tomllib.loads(_export(cli, config))
    assert [p["slug"] for p in after["policy"]] == ["social-media", "lone-working"]
    assert after["policy"][0]["schedule"] == {"reminder_after_days": [5, 10]}
    assert after["closure"][0]["name"] == "Staff training"
    # The new text is proposed, not in force: the export still gives the text in force.
    assert "Photographs" not in after["policy"][0]["text"]
    from workflow import config as config_mod
    from workflow.db import Database
    from sqlalchemy import select

    db = Database(config_mod.load(config).database.url)
    try:
        with db.read() as session:
            proposed = session.scalars(
                select(PolicyVersion).join(Policy, Policy.id == PolicyVersion.policy_id)
                .where(Policy.slug == "social-media")
                .order_by(PolicyVersion.id.desc()).limit(1)).one()
            assert (proposed.change, proposed.note, proposed.in_force_at) == (
                "minor", "A section on photographs.", None)
    finally:
        db.dispose()
    plan = cli("plan", "--from", at("2026-09-02 09:00").isoformat(), "--to",
               at("2026-09-09 00:00").isoformat(), config=config).output
    assert "2026-09-08 Tue 08:00  follow-up 1" in plan


def test_a_bad_library_file_exits_2_naming_the_key_and_stores_nothing(setup, cli, smtp,
                                                                       tmp_path):
    config = setup()
    before = _export(cli, config)
    path = tmp_path / "library.toml"
    path.write_text(before.replace('slug = "social-media"',
                                   'slug = "social-media"\nchange = "big"'))
    result = cli("policy", "import", str(path), config=config)
    assert result.exit_code == 2
    assert f"{path}: [policy 1] change" in result.output and "Traceback" not in result.output
    path.write_text("[[closure]]\nname = \"Half term\"\nfrom = \"2026-10-30\"\nto = \"2026-10-26\"\n")
    result = cli("policy", "import", str(path), config=config)
    assert result.exit_code == 2 and "[closure 1] to" in result.output
    assert _export(cli, config) == before
