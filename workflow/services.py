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


def services() -> Services:
    """The app's, within a request or an app context."""
    from flask import current_app

    return current_app.extensions["signoff"]
