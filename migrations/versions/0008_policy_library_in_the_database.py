"""the policy library in the database: each policy's audience, schedule, reminder note, state and
order; the setting's schedule and closures; a person's groups as rows; a request that no longer
applies

From the first `signoff init` on this revision, the database is where policies, their schedules
and audiences, and the setting's closures live (library.seed takes the config's tables in once;
`setting.schedule` stays NULL until it has). Groups move from a JSON list on each person to
`staff_group` rows, so that "is this person in this policy's audience" is one SQL join on every
database.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('setting', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule', sa.JSON(), nullable=True))
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('reminder_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('state', sa.String(length=10), nullable=False,
                                      server_default='active'))
        batch_op.add_column(sa.Column('position', sa.Integer(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dropped_at', sa.DateTime(), nullable=True))
    op.create_table(
        'policy_audience',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('policy_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(['policy_id'], ['policy.id'], ondelete='CASCADE',
                                name=op.f('fk_policy_audience_policy_id_policy')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_audience')),
        sa.UniqueConstraint('policy_id', 'name', name=op.f('uq_policy_audience_policy_id')))
    op.create_table(
        'closure',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('setting_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('first', sa.Date(), nullable=False),
        sa.Column('last', sa.Date(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['setting_id'], ['setting.id'],
                                name=op.f('fk_closure_setting_id_setting')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_closure')))
    op.create_index(op.f('ix_closure_setting_id'), 'closure', ['setting_id'])
    op.create_table(
        'staff_group',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('staff_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ondelete='CASCADE',
                                name=op.f('fk_staff_group_staff_id_staff')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_group')),
        sa.UniqueConstraint('staff_id', 'name', name=op.f('uq_staff_group_staff_id')))
    op.create_index('ix_staff_group_name', 'staff_group', ['name', 'staff_id'])

    connection = op.get_bind()
    staff = sa.table('staff', sa.column('id', sa.Integer), sa.column('groups', sa.JSON))
    group = sa.table('staff_group', sa.column('staff_id', sa.Integer),
                     sa.column('name', sa.String))
    rows = [{"staff_id": staff_id, "name": name}
            for staff_id, groups in connection.execute(sa.select(staff.c.id, staff.c.groups))
            for name in dict.fromkeys(groups or ())]
    if rows:
        connection.execute(group.insert(), rows)
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_column('groups')


def downgrade() -> None:
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.add_column(sa.Column('groups', sa.JSON(), nullable=False, server_default='[]'))
    connection = op.get_bind()
    staff = sa.table('staff', sa.column('id', sa.Integer), sa.column('groups', sa.JSON))
    group = sa.table('staff_group', sa.column('staff_id', sa.Integer),
                     sa.column('name', sa.String))
    found: dict[int, list[str]] = {}
    for staff_id, name in connection.execute(sa.select(group.c.staff_id, group.c.name)):
        found.setdefault(staff_id, []).append(name)
    for staff_id, names in found.items():
        connection.execute(staff.update().where(staff.c.id == staff_id).values(groups=names))
    op.drop_index('ix_staff_group_name', table_name='staff_group')
    op.drop_table('staff_group')
    op.drop_index(op.f('ix_closure_setting_id'), table_name='closure')
    op.drop_table('closure')
    op.drop_table('policy_audience')
    with op.batch_alter_table('request', schema=None) as batch_op:
        batch_op.drop_column('dropped_at')
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.drop_column('position')
        batch_op.drop_column('state')
        batch_op.drop_column('reminder_note')
        batch_op.drop_column('schedule')
    with op.batch_alter_table('setting', schema=None) as batch_op:
        batch_op.drop_column('schedule')
