"""digest_runs and digest_parts: a review's digests gathered by chunk tasks on the workers

Revision ID: 0013_digest_runs
Revises: 0012_derived_no_fk
Create Date: 2026-12-01 17:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013_digest_runs'
down_revision = '0012_derived_no_fk'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'digest_runs',
        sa.Column('review_date', sa.Date(), nullable=False),
        sa.Column('current', sa.Date(), nullable=False),
        sa.Column('chunk_size', sa.Integer(), nullable=False),
        sa.Column('first_chunk', sa.Integer(), nullable=False),
        sa.Column('chunks', sa.Integer(), nullable=False),
        sa.Column('done_chunks', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('send_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('review_date', name=op.f('pk_digest_runs')),
    )
    op.create_table(
        'digest_parts',
        sa.Column('review_date', sa.Date(), nullable=False),
        sa.Column('chunk', sa.Integer(), nullable=False),
        sa.Column('part', sa.String(length=30), nullable=False),
        sa.Column('content', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['review_date'], ['digest_runs.review_date'],
                                name=op.f('fk_digest_parts_review_date_digest_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('review_date', 'chunk', 'part', name=op.f('pk_digest_parts')),
    )


def downgrade() -> None:
    op.drop_table('digest_parts')
    op.drop_table('digest_runs')
