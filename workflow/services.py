"""The services every part of signoff shares (config, database, calendar), and how a request or
command reaches them. Its own module so the domain never imports the Flask app factory."""

from __future__ import annotations

from dataclasses import dataclass

from zoneinfo import ZoneInfo

from .config import Config
from .db import Database
from .library import Library, load


@dataclass
class Services:
    config: Config
    db: Database

    @classmethod
    def of(cls, config: Config, db: Database | None = None) -> Services:
        """What the config describes: its database (or `db`)."""
        return cls(config=config, db=db or Database(config.database.url))

    @property
    def tz(self) -> ZoneInfo:
        return self.config.setting.timezone

    def library(self, session) -> Library:
        """The policies, their schedules and audiences, and the closures, as stored now."""
        return load(session, self.config)


def services() -> Services:
    """The app's, within a request or an app context."""
    from flask import current_app

    return current_app.extensions["signoff"]
