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
    assert "Amira Khan" in message.get_body(("plain",)).get_content()
    assert link_in(message).startswith("http://signoff.test/c/")

    again = cli("tick", "--at", "2026-09-01T09:05+01:00", config=config)
    assert again.exit_code == 0
    assert len(smtp.inbox) == 3


def test_requests_that_decide_alike_are_queued_together_as_they_would_be_one_at_a_time(
        tmp_path, db_url, request, smtp, cli, monkeypatch):
    """A batch's requests that come to the same decision are queued by one INSERT … SELECT and
    updated by one UPDATE (tick.GROUPED or more of them); the outbox and the requests must end as
    the row-at-a-time path leaves them, through an opening day and a follow-up day."""
    from sqlalchemy import create_engine, select

    from conftest import ROSTER, initialise, write_config
    from workflow import tick
    from workflow.models import Outbox, Request, Staff

    def story(folder, url, grouped: int):
        monkeypatch.setattr(tick, "GROUPED", grouped)
        config = initialise(cli, write_config(folder, url, smtp.port), ROSTER)
        for moment in ("2026-09-01T09:00+01:00", "2026-09-10T09:00+01:00"):
            assert cli("tick", "--at", moment, config=config).exit_code == 0
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                outbox = conn.execute(
                    select(Outbox.key, Outbox.kind, Outbox.stage, Staff.email, Outbox.to_email,
                           Outbox.to_name, Outbox.status, Outbox.attempts, Outbox.created_at,
                           Outbox.next_attempt_at)
                    .join(Request, Outbox.request_id == Request.id)
                    .join(Staff, Request.staff_id == Staff.id)).all()
                requests = conn.execute(
                    select(Staff.email, Request.stage_sent, Request.last_message_at,
                           Request.next_check_at, Request.reminded_at, Request.overdue_at)
                    .join(Staff, Request.staff_id == Staff.id)).all()
        finally:
            engine.dispose()
        # Keys carry request ids, the same in both stories: each starts from an empty database.
        return sorted(map(tuple, outbox)), sorted(map(tuple, requests))

    second = (f"sqlite:///{tmp_path / 'grouped.db'}" if db_url.startswith("sqlite")
              else request.getfixturevalue("postgres").new_database())
    one_at_a_time = story(tmp_path / "rows", db_url, grouped=10**6)
    together = story(tmp_path / "grouped", second, grouped=2)
    assert together == one_at_a_time
    assert sorted(row[1] for row in together[0]) == ["followup"] * 3 + ["reminder"] * 3
    assert {row[3] for row in together[0]} == {"amira@example.org", "ben@example.org",
                                              "chloe@example.org"}
