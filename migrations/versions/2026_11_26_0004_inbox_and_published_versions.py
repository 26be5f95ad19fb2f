"""Slack inbox (a click is recorded before it is acknowledged) and published versions.

``slack_inbox`` replaces ``slack_requests``: each Slack request is one row keyed by its
Slack identity, inserted before the ack, marked done in the transaction that applies it.
``slack_messages`` records the session revision and digest each message shows, and when
it was last sent, so any replica can tell whether an update is due.

Revision ID: 2026_11_26_0004
Revises: 2026_11_23_0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2026_11_26_0004"
down_revision: str | None = "2026_11_23_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "slack_inbox",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("body", JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        # Until then the receiving replica owns it; after, any replica may take it over.
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_slack_inbox_pending", "slack_inbox", ["done_at", "claimed_until"])
    op.create_index("ix_slack_inbox_received", "slack_inbox", ["received_at"])
    op.drop_table("slack_requests")
    with op.batch_alter_table("slack_messages") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("slack_messages") as batch:
        batch.drop_column("sent_at")
        batch.drop_column("digest")
        batch.drop_column("version")
    op.create_table(
        "slack_requests",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_slack_requests_received_at", "slack_requests", ["received_at"])
    op.drop_index("ix_slack_inbox_received", table_name="slack_inbox")
    op.drop_index("ix_slack_inbox_pending", table_name="slack_inbox")
    op.drop_table("slack_inbox")
