"""versions proposed, then approved: a policy's later texts wait as proposals until their first
approval (name, role, date and minute reference, as the office records it) puts them in force;
the texts already stored were in force from when they were loaded

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('policy_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('proposed_by', sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('in_force_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE policy_version SET in_force_at = created_at")
    op.create_table(
        'approval',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('policy_version_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('role', sa.String(length=200), nullable=False),
        sa.Column('approved_on', sa.Date(), nullable=False),
        sa.Column('minute', sa.String(length=200), nullable=True),
        sa.Column('recorded_by', sa.String(length=320), nullable=False),
        sa.Column('recorded_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['policy_version_id'], ['policy_version.id'],
                                name=op.f('fk_approval_policy_version_id_policy_version')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_approval')),
    )
    op.create_index(op.f('ix_approval_policy_version_id'), 'approval', ['policy_version_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_approval_policy_version_id'), table_name='approval')
    op.drop_table('approval')
    with op.batch_alter_table('policy_version', schema=None) as batch_op:
        batch_op.drop_column('in_force_at')
        batch_op.drop_column('note')
        batch_op.drop_column('proposed_by')
