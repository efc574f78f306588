"""roster_upload: a console upload waits for its own admin in the database, not in a folder

An upload belongs to the admin who made it and is applied at most once (applying deletes its row);
`tick` removes those left unapplied after a day. Files left in instance/uploads by earlier versions
are no longer read, and can be deleted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'roster_upload',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('setting_id', sa.Integer(), nullable=False),
        sa.Column('admin_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['admin_id'], ['admin_user.id'], ondelete='CASCADE',
                                name=op.f('fk_roster_upload_admin_id_admin_user')),
        sa.ForeignKeyConstraint(['setting_id'], ['setting.id'],
                                name=op.f('fk_roster_upload_setting_id_setting')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roster_upload')),
    )
    op.create_index(op.f('ix_roster_upload_created_at'), 'roster_upload', ['created_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_roster_upload_created_at'), table_name='roster_upload')
    op.drop_table('roster_upload')
