"""Outbox: effects that must not be lost (pages, Slack updates), delivered by a worker.

Revision ID: 2026_11_23_0003
Revises: 2026_11_23_0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2026_11_23_0003"
down_revision: str | None = "2026_11_23_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        # Rows with the same (topic, ordering_key) are delivered one at a time, oldest first.
        sa.Column("ordering_key", sa.String(255), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("deploy_sessions.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        # Set when the worker gave up (too many attempts, or a permanent error).
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("topic", "idempotency_key", name="uq_outbox_topic_key"),
        sqlite_autoincrement=True,  # ids go to receivers: never hand one out twice
    )
    op.create_index("ix_outbox_due", "outbox", ["delivered_at", "next_attempt_at"])
    op.create_index("ix_outbox_ordering", "outbox", ["topic", "ordering_key"])


def downgrade() -> None:
    op.drop_index("ix_outbox_ordering", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
