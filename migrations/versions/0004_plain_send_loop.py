"""outbox: one claim over waiting rows, the daily limit's count, the shared pace; no `handed`

The send loop claims one row at a time from a partial index over the rows that wait (pending or
retrying), counts what went in the last 24 hours (and what is claimed to go) for `max_per_day`, and takes its turn for
`max_per_minute` from mail_pace. A row left `handed` by the earlier delivery code was taken by the
server: it is `sent`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

WAITING = sa.text("status IN ('pending', 'retrying')")


def upgrade() -> None:
    op.execute("UPDATE outbox SET status = 'sent', claimed_until = NULL WHERE status = 'handed'")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_ready')
        batch_op.create_index('ix_outbox_due', ['next_attempt_at', 'id'], unique=False,
                              sqlite_where=WAITING, postgresql_where=WAITING)
        batch_op.create_index('ix_outbox_sent_at', ['sent_at'], unique=False)
        batch_op.create_index('ix_outbox_claimed_until', ['claimed_until'], unique=False)
    op.create_table(
        'mail_pace',
        sa.Column('account', sa.String(length=400), nullable=False),
        sa.Column('next_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('account', name=op.f('pk_mail_pace')),
    )


def downgrade() -> None:
    op.drop_table('mail_pace')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_claimed_until')
        batch_op.drop_index('ix_outbox_sent_at')
        batch_op.drop_index('ix_outbox_due')
        batch_op.create_index('ix_outbox_ready', ['status', 'next_attempt_at', 'id'], unique=False)
