"""Probe runs, fired schedule slots, and APScheduler's job store.

Revision ID: 2026_11_23_0002
Revises: 2026_11_23_0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2026_11_23_0002"
down_revision: str | None = "2026_11_23_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "probe_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("deploy_sessions.id"), nullable=True),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_probe_runs_session_id", "probe_runs", ["session_id"])
    op.create_table(
        "schedule_slots",
        sa.Column(
            "session_id", sa.Integer(), sa.ForeignKey("deploy_sessions.id"), primary_key=True
        ),
        sa.Column("job", sa.String(32), primary_key=True),
        sa.Column("slot", sa.Integer(), primary_key=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "apscheduler_jobs",
        sa.Column("id", sa.Unicode(191), primary_key=True),
        sa.Column("next_run_time", sa.Float(25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_apscheduler_jobs_next_run_time", "apscheduler_jobs", ["next_run_time"])


def downgrade() -> None:
    op.drop_index("ix_apscheduler_jobs_next_run_time", table_name="apscheduler_jobs")
    op.drop_table("apscheduler_jobs")
    op.drop_table("schedule_slots")
    op.drop_index("ix_probe_runs_session_id", table_name="probe_runs")
    op.drop_table("probe_runs")
