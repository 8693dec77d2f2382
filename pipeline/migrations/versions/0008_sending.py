"""outbox: when a message was first tried, the start of its retry window

Revision ID: 0008_sending
Revises: 0005
Create Date: 2026-11-24 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008_sending'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=True))
    # Messages tried before this column existed start their window at their first recorded try.
    op.execute(
        "UPDATE outbox SET first_attempt_at = (SELECT min(attempted_at) FROM delivery_attempts "
        "WHERE delivery_attempts.message_id = outbox.id) WHERE attempts > 0"
    )


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('first_attempt_at')
