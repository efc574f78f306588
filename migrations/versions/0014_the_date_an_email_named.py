"""the date an email named: a request keeps the date to confirm by that its latest email named, so
that a change to the schedule or the closures never moves it earlier for that person

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 01:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('named_due', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.drop_column('named_due')
