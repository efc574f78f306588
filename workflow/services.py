"""The services every part of signoff shares (config, database, calendar), and how a request or
command reaches them. Its own module so the domain never imports the Flask app factory."""

from __future__ import annotations

from dataclasses import dataclass

from .calendar import Calendar
from .config import Config
from .db import Database


@dataclass
class Services:
    config: Config
    db: Database
    calendar: Calendar

    @classmethod
    def of(cls, config: Config, db: Database | None = None) -> Services:
        """What the config describes: its database (or `db`) and its calendar."""
        return cls(config=config, db=db or Database(config.database.url),
                   calendar=Calendar(config.schedule, config.setting.timezone, config.closures))


def services() -> Services:
    """The app's, within a request or an app context."""
    from flask import current_app

    return current_app.extensions["signoff"]
