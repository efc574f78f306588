"""The tick's helper processes (workflow/helpers.py): really forked, fed over real pipes."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from workflow import helpers
from workflow.db import Database


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'helpers.db'}")
    yield database
    database.dispose()


def test_a_helper_answers_in_order_and_its_error_comes_back_to_the_tick(db):
    @contextmanager
    def doubling():
        def answer(n: int) -> int:
            if n < 0:
                raise ValueError(f"negative: {n}")
            return 2 * n

        yield answer

    helper = helpers.Helper("signoff-test", "doubling", db, doubling)
    try:
        for n in (1, 2, 3):
            helper.send(n)
        assert [helper.receive() for _ in range(3)] == [2, 4, 6]
        helper.send(-1)
        with pytest.raises(ValueError, match="negative: -1"):
            helper.receive()
        helper.send(4)  # it has stopped: nothing more is answered
        with pytest.raises(helpers.HelperError, match="the doubling process stopped"):
            helper.receive()
    finally:
        helper.close()


def test_a_helper_that_cannot_start_says_why_and_prints_no_traceback(db, capfd):
    @contextmanager
    def cannot_start():
        raise RuntimeError("the database is unreachable")
        yield  # pragma: no cover

    helper = helpers.Helper("signoff-test", "test", db, cannot_start)
    try:
        helper.send("an order")
        with pytest.raises(RuntimeError, match="the database is unreachable"):
            helper.receive()
    finally:
        helper.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_helper_goes_when_the_tick_closes_its_pipe(db):
    @contextmanager
    def idle():
        yield lambda order: order

    helper = helpers.Helper("signoff-test", "idle", db, idle)
    helper._orders.close()  # as when the tick's process is gone
    helper.process.join(timeout=10)
    assert helper.process.exitcode == 0
