"""The append-only event log: one helper, so every entry has the same shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from .models import Event


def record(session: Session | Connection, kind: str, at: dt.datetime, *, actor: str = "system",
           staff_id: int | None = None, request_id: int | None = None, **detail: Any) -> None:
    # A plain INSERT, not the ORM's unit of work: the opening day writes one per email sent.
    # `session` may be an ORM Session or a Core Connection.
    session.execute(INSERT, row(kind, at, actor=actor, staff_id=staff_id, request_id=request_id,
                                **detail))


def row(kind: str, at: dt.datetime, *, actor: str = "system", staff_id: int | None = None,
        request_id: int | None = None, **detail: Any) -> dict[str, Any]:
    """One entry's parameters for INSERT, for writing many in one execute."""
    return {"kind": kind, "at": at, "actor": actor, "staff_id": staff_id,
            "request_id": request_id, "detail": detail or None}


INSERT = insert(Event.__table__)
