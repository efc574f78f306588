"""The first tick of a cycle, end to end through the CLI, on both databases."""

from conftest import link_in


def test_first_tick_sends_one_reminder_each_and_is_idempotent(setup, cli, smtp):
    config = setup()
    first = cli("tick", "--at", "2026-09-01T09:00+01:00", config=config)
    assert first.exit_code == 0, first.output
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.inbox.messages) == [
        "amira@example.org", "ben@example.org", "chloe@example.org"]
    message = smtp.inbox.to("amira@example.org")[0]
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Dear Amira," in message.get_body(("plain",)).get_content()
    assert message["To"].addresses[0].display_name == "Amira Khan"
    assert link_in(message).startswith("http://signoff.test/c/")

    again = cli("tick", "--at", "2026-09-01T09:05+01:00", config=config)
    assert again.exit_code == 0
    assert len(smtp.inbox) == 3


def test_an_idle_tick_runs_as_many_statements_for_sixty_people_as_for_three(
        tmp_path, db_url, request, smtp, cli):
    """Once everyone is asked, a tick with nothing due reads only what is due: its statement
    count does not grow with the roster."""
    import datetime as dt

    from sqlalchemy import event

    from conftest import initialise, write_config
    from workflow import config as config_mod
    from workflow import tick
    from workflow.app import create_app

    def idle_statements(folder, url, people: int) -> int:
        roster = "name,email\n" + "".join(f"P {i},p{i}@example.org\n" for i in range(people))
        config = initialise(cli, write_config(folder, url, smtp.port), roster)
        assert cli("tick", "--at", "2026-09-01T09:00+01:00", config=config).exit_code == 0
        app = create_app(config_mod.load(config))
        svc = app.extensions["signoff"]
        statements = []
        event.listen(svc.db.engine, "before_cursor_execute",
                     lambda *args: statements.append(args[2]))
        try:
            with app.app_context():
                result = tick.run(svc, dt.datetime(2026, 9, 2, 10, tzinfo=dt.timezone.utc))
        finally:
            svc.db.dispose()
        assert result.queued == result.delivery.sent == 0
        return len(statements)

    other = (f"sqlite:///{tmp_path / 'more.db'}" if db_url.startswith("sqlite")
             else request.getfixturevalue("postgres").new_database())
    assert idle_statements(tmp_path / "three", db_url, 3) == \
        idle_statements(tmp_path / "sixty", other, 60)
