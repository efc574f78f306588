"""staff.first_name and groups; a paper sign-off's date signed and where the form is kept; an
upload's "whole staff list" and chosen columns

A person's first name greets them ("Dear Amira"); existing people get the first word of their
name. Groups (from the roster's `groups` column) start empty. Paper sign-offs recorded before now
have no date signed or place.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_name', sa.String(length=100), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('groups', sa.JSON(), nullable=False, server_default='[]'))
    with op.batch_alter_table('confirmation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('paper_kept', sa.String(length=200), nullable=True))
    with op.batch_alter_table('roster_upload', schema=None) as batch_op:
        batch_op.add_column(sa.Column('full', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('columns', sa.JSON(), nullable=True))
    staff = sa.table('staff', sa.column('id', sa.Integer), sa.column('name', sa.String),
                     sa.column('first_name', sa.String))
    connection = op.get_bind()
    for person_id, name in connection.execute(sa.select(staff.c.id, staff.c.name)).all():
        first = (name.split() or [""])[0][:100]
        connection.execute(staff.update().where(staff.c.id == person_id).values(first_name=first))


def downgrade() -> None:
    with op.batch_alter_table('roster_upload', schema=None) as batch_op:
        batch_op.drop_column('columns')
        batch_op.drop_column('full')
    with op.batch_alter_table('confirmation', schema=None) as batch_op:
        batch_op.drop_column('paper_kept')
        batch_op.drop_column('signed_on')
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_column('groups')
        batch_op.drop_column('first_name')
