"""What can go wrong that a user can fix, with a message saying how: the command line turns each
into one line and exit 2. Here, apart from the modules that raise them, so that `signoff` can catch
them without importing SQLAlchemy, the holidays package or Flask first."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and key."""


class DatabaseError(Exception):
    """The database cannot be used (unreachable, not initialised); the message says what to do."""


class RosterError(Exception):
    """A staff list that cannot be imported: every problem, each naming the file and line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems
