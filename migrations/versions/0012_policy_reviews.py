"""policy reviews: each policy is reviewed review_every_months (default 12) after the latest
approval of its text in force, unless its review date is set by hand or brought forward by an
early review (with why, and by whom)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 17:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_every_months', sa.Integer(), nullable=False,
                                      server_default='12'))
        batch_op.add_column(sa.Column('review_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('review_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('review_set_by', sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.drop_column('review_set_by')
        batch_op.drop_column('review_reason')
        batch_op.drop_column('review_on')
        batch_op.drop_column('review_every_months')
