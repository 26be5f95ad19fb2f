"""The deploy queue: people waiting for an environment's slot, and whose turn it is.

Revision ID: 2026_12_03_0007_queue
Revises: 2026_12_02_0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_03_0007_queue"
down_revision: str | None = "2026_12_02_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "state IN ('waiting', 'called')"


def upgrade() -> None:
    op.create_table(
        "deploy_queue",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False, server_default=""),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("called_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("turn_until", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_deploy_queue_lane", "deploy_queue", ["environment", "service", "state"])
    op.create_index(
        "uq_deploy_queue_active",
        "deploy_queue",
        ["environment", "service", "user_id"],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_deploy_queue_active", table_name="deploy_queue")
    op.drop_index("ix_deploy_queue_lane", table_name="deploy_queue")
    op.drop_table("deploy_queue")
