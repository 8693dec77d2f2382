"""drop the index on project_flags.computed_color: nothing filters on it, and every re-flag paid for it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:10:00
"""
from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_project_flags_computed_color', table_name='project_flags')


def downgrade() -> None:
    op.create_index('ix_project_flags_computed_color', 'project_flags', ['computed_color'], unique=False)
