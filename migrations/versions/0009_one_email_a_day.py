"""one email a day: each outbox row names the person it goes to, so that the send loop can put
everything due for one person into one email, and hold back what comes due for them on a day
they have already had one; and an index of the requests closed as no longer applying, so that an
idle tick need not read every request to find none come back into their policy's audience

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('staff_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_outbox_staff_id_staff', 'staff', ['staff_id'], ['id'])
        batch_op.create_index('ix_outbox_staff_id', ['staff_id', 'sent_at'])
    op.execute("UPDATE outbox SET staff_id = (SELECT staff_id FROM request "
               "WHERE request.id = outbox.request_id) WHERE request_id IS NOT NULL")
    op.create_index('ix_request_dropped', 'request', ['cycle_id'],
                    sqlite_where=sa.text('dropped_at IS NOT NULL'),
                    postgresql_where=sa.text('dropped_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_request_dropped', table_name='request')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_staff_id')
        batch_op.drop_constraint('fk_outbox_staff_id_staff', type_='foreignkey')
        batch_op.drop_column('staff_id')
