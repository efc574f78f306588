"""Helper processes a tick forks to work beside its sending loop: the composer (compose.py) and,
on PostgreSQL, the turns between batches (outbox.py).

Each is forked with no database connection of the tick's open, takes orders over one pipe and
answers each over another, in order, and exits when told to or when the tick is gone (its end of
the orders pipe closes). A Ctrl-C at the terminal reaches the whole process group: the tick decides
what stops, so a helper ignores it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from contextlib import AbstractContextManager
from typing import Any, Callable

log = logging.getLogger("signoff.helpers")

PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process


class HelperError(Exception):
    """A helper process stopped unexpectedly; the message says which."""


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


class Helper:
    """A forked helper, `serving` run in it: a context manager giving the function that answers
    each order (an exception it raises is raised again by receive(), and the helper stops).
    `others` are pipe ends of the tick's that the child must close (another helper's), and
    `wide` gives the answers room for a whole composed batch (Linux)."""

    def __init__(self, name: str, what: str, db, serving: Callable[[], AbstractContextManager],
                 others: tuple = (), wide: bool = False):
        fork = multiprocessing.get_context("fork")
        self.what = what
        self._answers, child_answers = fork.Pipe(duplex=False)
        if wide:
            _widen(child_answers)
        child_orders, self._orders = fork.Pipe(duplex=False)
        self.process = fork.Process(
            target=_serve, name=name, daemon=True,
            args=(child_orders, child_answers, (self._answers, self._orders, *others), db,
                  serving))
        self.process.start()
        child_orders.close()
        child_answers.close()

    def send(self, order: Any) -> None:
        try:
            self._orders.send(order)
        except OSError:  # it has stopped (an order before failed): receive() says why
            pass

    def receive(self) -> Any:
        """The answer to the oldest order not yet received."""
        try:
            status, value = self._answers.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise HelperError(f"the {self.what} process stopped unexpectedly (exit code "
                              f"{self.process.exitcode})") from None
        if status != "ok":
            raise value
        return value

    def pipes(self) -> tuple:
        """The tick's ends of this helper's pipes, for a helper forked later to close: this one
        sees its orders end only when every copy is closed."""
        return self._answers, self._orders

    def close(self) -> None:
        self.send(None)
        self._orders.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self._answers.close()


def _serve(orders, answers, theirs: tuple, db, serving) -> None:
    for end in theirs:  # else this process would keep the tick's ends open and never see EOF
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    db.engine.dispose(close=False)  # the tick's pooled connections are the tick's
    # A helper works a batch ahead, so it can yield the CPU to the sending loop and the mail
    # server whenever they want it: they are the ones the run waits for.
    os.nice(10)
    try:
        with serving() as answer:
            while True:
                try:
                    order = orders.recv()
                except (EOFError, OSError):
                    return
                if order is None:
                    return
                try:
                    reply = ("ok", answer(order))
                except Exception as exc:  # noqa: BLE001 — raised again in the tick by receive()
                    log.debug("a helper's order failed", exc_info=True)
                    _answer(answers, ("error", exc))
                    return
                if not _answer(answers, reply):
                    return
    except Exception as exc:  # noqa: BLE001 — it could not start (no database, say): the same
        log.debug("a helper failed", exc_info=True)
        _answer(answers, ("error", exc))


def _answer(answers, reply: tuple) -> bool:
    """Send `reply`; False if the tick is gone. Never a traceback on the terminal from here."""
    try:
        answers.send(reply)
        return True
    except OSError:
        return False
    except Exception:  # noqa: BLE001 — an error that cannot be pickled: say what it was
        value = reply[1]
        return _answer(answers, ("error", HelperError(f"{type(value).__name__}: {value}")))


def _widen(pipe) -> None:
    """Room in the pipe for a whole composed batch (Linux), so the helper hands it over and goes
    on to the next instead of waiting for the tick to read it 64 KiB at a time."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass
