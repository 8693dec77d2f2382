"""digest runs rendered in parts: digest_runs.leader_starts and done_parts, and digest_renders

Revision ID: 0014_digest_renders
Revises: 0013_digest_runs
Create Date: 2026-12-02 08:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014_digest_renders'
down_revision = '0013_digest_runs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('digest_runs') as batch:
        batch.add_column(sa.Column('leader_starts', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('done_parts', sa.Integer(), server_default='0', nullable=False))
    op.create_table(
        'digest_renders',
        sa.Column('review_date', sa.Date(), nullable=False),
        sa.Column('part', sa.Integer(), nullable=False),
        sa.Column('messages', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['review_date'], ['digest_runs.review_date'],
                                name=op.f('fk_digest_renders_review_date_digest_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('review_date', 'part', name=op.f('pk_digest_renders')),
    )


def downgrade() -> None:
    op.drop_table('digest_renders')
    with op.batch_alter_table('digest_runs') as batch:
        batch.drop_column('done_parts')
        batch.drop_column('leader_starts')
