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
