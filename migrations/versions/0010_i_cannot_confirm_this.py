""""I can't confirm this": a person may say on their page that they cannot confirm a policy, which
statement and why; the request is closed (nothing more is chased) until the head teacher or the
office resolves it, and every decline is kept with its resolution for the evidence

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 16:30:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('declined_at', sa.DateTime(), nullable=True))
    op.create_table(
        'decline',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.Integer(), nullable=False),
        sa.Column('declined_at', sa.DateTime(), nullable=False),
        sa.Column('statement', sa.Text(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('ip_address', sa.String(length=64), nullable=True),
        sa.Column('user_agent', sa.String(length=512), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_by', sa.String(length=320), nullable=True),
        sa.Column('outcome', sa.String(length=20), nullable=True),
        sa.Column('resolution', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['request_id'], ['request.id'],
                                name=op.f('fk_decline_request_id_request')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_decline')),
    )
    op.create_index(op.f('ix_decline_request_id'), 'decline', ['request_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_decline_request_id'), table_name='decline')
    op.drop_table('decline')
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.drop_column('declined_at')
