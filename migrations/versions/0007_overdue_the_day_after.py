"""overdue the day after the date a reminder asked for

A reminder names a date to confirm by. Until now a request's `overdue_at` was that very date, at
the send time, so the head teacher's digest called someone overdue on the morning of the day
they had been given. From now on they are overdue from the start of the next day, local time. An
open request (not confirmed, not exempt) keeps its date and becomes overdue at midnight after it,
in the setting's time zone; closed requests are left as they are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00
"""
import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

setting = sa.table('setting', sa.column('id', sa.Integer), sa.column('timezone', sa.String))
policy = sa.table('policy', sa.column('id', sa.Integer), sa.column('setting_id', sa.Integer))
cycle = sa.table('cycle', sa.column('id', sa.Integer), sa.column('policy_id', sa.Integer))
request = sa.table('request', sa.column('id', sa.Integer), sa.column('cycle_id', sa.Integer),
                   sa.column('overdue_at', sa.DateTime), sa.column('closed_at', sa.DateTime))
confirmation = sa.table('confirmation', sa.column('request_id', sa.Integer))


def _shift(days: int) -> None:
    """Each open request's overdue_at: the start of its local day, moved by `days`. Times are
    stored as naive UTC; the day is the setting's, so a date either side of a clock change keeps
    its midnight (00:00 local is 23:00 UTC in summer in London, 00:00 UTC in winter)."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(request.c.id, request.c.overdue_at, setting.c.timezone)
        .select_from(request.join(cycle, request.c.cycle_id == cycle.c.id)
                     .join(policy, cycle.c.policy_id == policy.c.id)
                     .join(setting, policy.c.setting_id == setting.c.id))
        .where(request.c.overdue_at.is_not(None), request.c.closed_at.is_(None),
               request.c.id.not_in(sa.select(confirmation.c.request_id)))).all()
    for request_id, stored, timezone in rows:
        tz = ZoneInfo(timezone)
        day = stored.replace(tzinfo=dt.timezone.utc).astimezone(tz).date() + dt.timedelta(days=days)
        # Where the clocks jump at midnight, 00:00 does not exist: zoneinfo takes the offset
        # from before the jump, which is the moment that day begins.
        starts = dt.datetime.combine(day, dt.time(0), tzinfo=tz).astimezone(dt.timezone.utc)
        connection.execute(request.update().where(request.c.id == request_id)
                           .values(overdue_at=starts.replace(tzinfo=None)))


def upgrade() -> None:
    _shift(+1)


def downgrade() -> None:
    # Back to the date itself. The old rule's hour (the send time) is in the config file, not in
    # the database: the start of that day is the nearest the database can say.
    _shift(-1)
