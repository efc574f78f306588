"""outbox: ix_outbox_ready carries id, the claim's last sort key

A claim takes the first due rows in (next_attempt_at, id) order. With id in the index PostgreSQL
walks it in that order and stops at the batch size; without, it sorted every due row on every
claim. (SQLite's indexes end with the rowid already: for it this changes nothing.)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:30:00
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_ready')
        batch_op.create_index('ix_outbox_ready', ['status', 'next_attempt_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_ready')
        batch_op.create_index('ix_outbox_ready', ['status', 'next_attempt_at'], unique=False)
