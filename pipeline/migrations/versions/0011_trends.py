"""month_trends: each group's colour counts and three rates at each month end, kept

Revision ID: 0011_trends
Revises: 0007_import
Create Date: 2026-11-30 20:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011_trends'
down_revision = '0007_import'
branch_labels = None
depends_on = None

_COUNTS = ('red', 'yellow', 'green', 'projects', 'start_done', 'start_due', 'start_year_done', 'start_year',
           'completion_done', 'completion_due', 'completion_year_done', 'completion_year', 'stats_done', 'stats_due')


def upgrade() -> None:
    op.create_table(
        'month_trends',
        sa.Column('month_end', sa.Date(), nullable=False),
        sa.Column('grouping', sa.String(length=20), nullable=False),
        sa.Column('group_name', sa.String(length=200), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTS),
        sa.Column('ytd_sum', sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column('plan_sum', sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('month_end', 'grouping', 'group_name'),
    )
    op.create_index('ix_month_trends_group', 'month_trends', ['grouping', 'group_name', 'month_end'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_month_trends_group', table_name='month_trends')
    op.drop_table('month_trends')
