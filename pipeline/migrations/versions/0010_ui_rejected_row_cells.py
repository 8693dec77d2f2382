"""keep each rejected row's cells, so the office can download the refused rows, fix them and upload again

Revision ID: 0010_ui
Revises: 0006_accounts
Create Date: 2026-12-01 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0010_ui'
down_revision = '0006_accounts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rejected_rows') as batch:
        batch.add_column(sa.Column('cells', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rejected_rows') as batch:
        batch.drop_column('cells')
