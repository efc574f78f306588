"""The append-only event log: one helper, so every entry has the same shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from .models import Event


def record(session: Session, kind: str, at: dt.datetime, *, actor: str = "system",
           staff_id: int | None = None, request_id: int | None = None, **detail: Any) -> None:
    session.add(Event(kind=kind, at=at, actor=actor, staff_id=staff_id, request_id=request_id,
                      detail=detail or None))
