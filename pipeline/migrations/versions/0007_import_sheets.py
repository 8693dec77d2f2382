"""import batches count their rows hidden in Excel; a refused row names its worksheet

Revision ID: 0007_import
Revises: 0010_ui
Create Date: 2026-11-30 19:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_import'
down_revision = '0010_ui'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('import_batches') as batch:
        batch.add_column(sa.Column('hidden_rows', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('rejected_rows') as batch:
        batch.add_column(sa.Column('sheet', sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rejected_rows') as batch:
        batch.drop_column('sheet')
    with op.batch_alter_table('import_batches') as batch:
        batch.drop_column('hidden_rows')
