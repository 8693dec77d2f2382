"""set-based data path: master columns on updates (no payload), month flags, re-flag runs,
flag inputs, change requests

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 16:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
MONEY = sa.Numeric(16, 2)
MASTER = (
    ('name', sa.String(200)), ('county', sa.String(50)), ('industry', sa.String(50)), ('nature', sa.String(10)),
    ('total_investment', MONEY), ('leader', sa.String(50)), ('unit', sa.String(200)),
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table('status_updates') as batch:
        for name, type_ in MASTER:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(sa.Column('lists', JSON, nullable=True))
        batch.add_column(sa.Column('note', sa.Text(), nullable=True))
    # The master data each update carried in its JSON payload move to their columns.
    if dialect == 'postgresql':
        sets = ", ".join(f"{n} = (payload->>'{n}')::{'numeric' if n == 'total_investment' else 'text'}"
                         for n, _ in MASTER)
        op.execute(f"UPDATE status_updates SET {sets}, lists = payload->'lists'")
    else:
        sets = ", ".join(f"{n} = json_extract(payload, '$.{n}')" for n, _ in MASTER)
        op.execute(f"UPDATE status_updates SET {sets}, lists = json_extract(payload, '$.lists')")
    op.execute("UPDATE status_updates SET status = 'applied' WHERE status = 'superseded'")
    with op.batch_alter_table('status_updates') as batch:
        batch.drop_column('payload')

    with op.batch_alter_table('import_batches') as batch:
        batch.add_column(sa.Column('submitted_by', sa.String(100), nullable=True))
        batch.add_column(sa.Column('unit_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_import_batches_unit_id_units', 'units', ['unit_id'], ['id'])

    with op.batch_alter_table('project_flags') as batch:
        batch.add_column(sa.Column('base_color', sa.String(10), server_default='green', nullable=False))
        batch.add_column(sa.Column('update_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('previous_base', sa.String(10), nullable=True))

    op.create_table(
        'month_flags',
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('month_end', sa.Date(), nullable=False),
        sa.Column('update_id', sa.Integer(), nullable=False),
        sa.Column('computed_color', sa.String(10), nullable=False),
        sa.Column('base_color', sa.String(10), nullable=False),
        sa.Column('reasons', JSON, nullable=False),
        sa.Column('scheme', sa.String(100), nullable=False),
        sa.Column('scheme_version', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name='fk_month_flags_project_id_projects',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('project_id', 'month_end', name='pk_month_flags'),
    )
    op.create_index('ix_month_flags_month_end', 'month_flags', ['month_end'])
    op.create_table(
        'month_closes',
        sa.Column('month_end', sa.Date(), nullable=False),
        sa.Column('scheme', sa.String(100), nullable=False),
        sa.Column('scheme_version', sa.Integer(), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('month_end', name='pk_month_closes'),
    )
    op.create_table(
        'reflag_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('as_of', sa.Date(), nullable=False),
        sa.Column('cause', sa.String(30), nullable=False),
        sa.Column('months', JSON, nullable=False),
        sa.Column('chunk_size', sa.Integer(), nullable=False),
        sa.Column('chunks', sa.Integer(), nullable=False),
        sa.Column('done_chunks', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_reflag_runs'),
    )
    op.create_table(
        'reflag_chunks',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('chunk', sa.Integer(), nullable=False),
        sa.Column('evaluated', sa.Integer(), nullable=False),
        sa.Column('changed', sa.Integer(), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['reflag_runs.id'], name='fk_reflag_chunks_run_id_reflag_runs',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'chunk', name='pk_reflag_chunks'),
    )
    op.create_table(
        'change_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('update_id', sa.Integer(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=True),
        sa.Column('field', sa.String(50), nullable=False),
        sa.Column('current_value', sa.Text(), nullable=True),
        sa.Column('proposed_value', sa.Text(), nullable=True),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_by', sa.String(100), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name='fk_change_requests_project_id_projects',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['update_id'], ['status_updates.id'],
                                name='fk_change_requests_update_id_status_updates'),
        sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name='fk_change_requests_unit_id_units'),
        sa.PrimaryKeyConstraint('id', name='pk_change_requests'),
        sa.UniqueConstraint('update_id', 'field', name='uq_change_requests_update_field'),
    )
    op.create_index('ix_change_requests_project_id', 'change_requests', ['project_id'])
    op.create_index('ix_change_requests_status', 'change_requests', ['status'])


def downgrade() -> None:
    for table in ('change_requests', 'reflag_chunks', 'reflag_runs', 'month_closes', 'month_flags'):
        op.drop_table(table)
    with op.batch_alter_table('project_flags') as batch:
        for name in ('previous_base', 'update_id', 'base_color'):
            batch.drop_column(name)
    with op.batch_alter_table('import_batches') as batch:
        batch.drop_constraint('fk_import_batches_unit_id_units', type_='foreignkey')
        batch.drop_column('unit_id')
        batch.drop_column('submitted_by')
    with op.batch_alter_table('status_updates') as batch:
        batch.add_column(sa.Column('payload', JSON, nullable=True))
        for name in ('note', 'lists', *(n for n, _ in MASTER)):
            batch.drop_column(name)
