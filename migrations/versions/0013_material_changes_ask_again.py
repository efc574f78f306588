"""material changes ask again: a version says whether it is a material or a minor change; once a
material one is in force, those who confirmed an older text this cycle are asked again (their
confirmation kept, marked superseded; a request counts its rounds, so that the new reminders
have outbox keys of their own)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 17:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('policy_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('change', sa.String(length=10), nullable=True))
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('confirmation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('superseded_at', sa.DateTime(), nullable=True))
        batch_op.drop_constraint('uq_confirmation_request_id', type_='unique')
    op.create_index('uq_confirmation_live', 'confirmation', ['request_id'], unique=True,
                    sqlite_where=sa.text('superseded_at IS NULL'),
                    postgresql_where=sa.text('superseded_at IS NULL'))


def downgrade() -> None:
    op.drop_index('uq_confirmation_live', table_name='confirmation')
    with op.batch_alter_table('confirmation', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_confirmation_request_id', ['request_id'])
        batch_op.drop_column('superseded_at')
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.drop_column('round')
    with op.batch_alter_table('policy_version', schema=None) as batch_op:
        batch_op.drop_column('change')
