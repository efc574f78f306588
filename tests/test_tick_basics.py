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
    """Requests are queued in bulk where they can be: those of people who had started by the
    opening are created already planned, their first reminders queued with them; a batch's
    requests that come to the same decision are queued by one INSERT … SELECT and updated by one
    UPDATE (tick.GROUPED or more of them). The outbox and the requests must end as they do when
    every request is made unplanned and then queued a row at a time, through an opening day (with
    a new starter still to start), her first day and a follow-up day."""
    from sqlalchemy import create_engine, literal, select

    from conftest import ROSTER, initialise, write_config
    from workflow import tick
    from workflow.models import Outbox, Request, Staff, UTCDateTime

    def unplanned(svc, session, setting_id, cycles, now):
        """Every new request left for _queue_due() to plan, as they all were once."""
        added = 0
        for cycle in cycles:
            asked = select(Request.staff_id).where(Request.cycle_id == cycle.id)
            missing = (select(literal(cycle.id), Staff.id, literal(now, UTCDateTime()),
                              literal(-1), literal(now, UTCDateTime()))
                       .where(Staff.setting_id == setting_id, Staff.active,
                              Staff.id.not_in(asked)))
            added += session.execute(svc.db.insert(Request.__table__).from_select(
                ["cycle_id", "staff_id", "created_at", "stage_sent", "next_check_at"],
                missing)).rowcount
        return added, 0

    roster = ROSTER + "Dan Price,dan@example.org,Cook,2026-09-07,yes\n"

    asking = tick._ask_everyone

    def story(folder, url, grouped: int, planned_when_asked: bool):
        monkeypatch.setattr(tick, "GROUPED", grouped)
        monkeypatch.setattr(tick, "_ask_everyone", asking if planned_when_asked else unplanned)
        config = initialise(cli, write_config(folder, url, smtp.port), roster)
        for moment in ("2026-09-01T09:00+01:00", "2026-09-07T09:00+01:00",
                       "2026-09-10T09:00+01:00"):
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
    one_at_a_time = story(tmp_path / "rows", db_url, grouped=10**6, planned_when_asked=False)
    together = story(tmp_path / "grouped", second, grouped=2, planned_when_asked=True)
    assert together == one_at_a_time
    assert sorted(row[1] for row in together[0]) == ["followup"] * 3 + ["reminder"] * 4
    assert {row[3] for row in together[0]} == {"amira@example.org", "ben@example.org",
                                              "chloe@example.org", "dan@example.org"}
