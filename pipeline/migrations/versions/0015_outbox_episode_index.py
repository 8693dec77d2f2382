"""outbox.episode_change_id indexed: whether a red episode's notice is planned is asked by episode

Revision ID: 0015_outbox_episode_index
Revises: 0014_digest_renders
Create Date: 2026-12-02 16:00:00
"""
from __future__ import annotations

from alembic import op

revision = '0015_outbox_episode_index'
down_revision = '0014_digest_renders'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f('ix_outbox_episode_change_id'), 'outbox', ['episode_change_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_outbox_episode_change_id'), table_name='outbox')
