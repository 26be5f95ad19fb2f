"""Probe rounds in progress, with their owner and heartbeat.

A process that dies during a probe round leaves the items it started "running". Each round
is recorded with the process running it and a heartbeat it renews; a round whose heartbeat
stopped is found by any replica, which marks its items interrupted.

Revision ID: 2026_12_01_0005
Revises: 2026_11_26_0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_12_01_0005"
down_revision: str | None = "2026_11_26_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "probe_rounds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("deploy_sessions.id"), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_probe_rounds_open", "probe_rounds", ["finished_at", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_probe_rounds_open", table_name="probe_rounds")
    op.drop_table("probe_rounds")
