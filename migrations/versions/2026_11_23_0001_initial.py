"""Initial schema: deploy sessions, append-only audit log, locks, Slack message refs.

Revision ID: 2026_11_23_0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "2026_11_23_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
APPEND_ONLY = "audit_events is append-only"


def _timestamp(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "deploy_sessions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("service", sa.String(100), nullable=False, server_default=""),
        sa.Column("version", sa.String(200), nullable=False, server_default=""),
        sa.Column("requester", sa.String(100), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("checklist", JSON, nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("progress", JSON, nullable=False),
        _timestamp("opened_at"),
        _timestamp("updated_at"),
        _timestamp("closed_at", nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sqlite_autoincrement=True,  # people type these ids: never reuse one
    )
    # One open session per environment and service, whatever the application does.
    op.create_index(
        "uq_deploy_sessions_open",
        "deploy_sessions",
        ["environment", "service"],
        unique=True,
        sqlite_where=sa.text("is_open"),
        postgresql_where=sa.text("is_open"),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("deploy_sessions.id"), nullable=True),
        sa.Column("environment", sa.String(100), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("data", JSON, nullable=False),
        _timestamp("at"),
    )
    op.create_index("ix_audit_events_session_id", "audit_events", ["session_id"])
    _create_append_only_triggers()

    op.create_table(
        "environment_locks",
        sa.Column("environment", sa.String(100), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("locked_by", sa.String(100), nullable=False),
        _timestamp("locked_at"),
    )

    op.create_table(
        "slack_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("deploy_sessions.id"), nullable=False),
        sa.Column("purpose", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("ts", sa.String(64), nullable=False),
        sa.UniqueConstraint("session_id", "purpose", name="uq_slack_messages_purpose"),
    )

    op.create_table(
        "slack_requests",
        sa.Column("key", sa.String(200), primary_key=True),
        _timestamp("received_at"),
    )
    op.create_index("ix_slack_requests_received_at", "slack_requests", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_slack_requests_received_at", table_name="slack_requests")
    op.drop_table("slack_requests")
    op.drop_table("slack_messages")
    op.drop_table("environment_locks")
    _drop_append_only_triggers()
    op.drop_index("ix_audit_events_session_id", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("uq_deploy_sessions_open", table_name="deploy_sessions")
    op.drop_table("deploy_sessions")


def _dialect() -> str:
    # get_context() rather than get_bind(): it also works when emitting SQL offline.
    return op.get_context().dialect.name


def _create_append_only_triggers() -> None:
    """The audit log can be appended to, never rewritten, whoever holds a connection."""
    if _dialect() == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{action.lower()} BEFORE {action} "
                f"ON audit_events BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
    elif _dialect() == "postgresql":
        # SQLSTATE 23000 so drivers report an integrity error, as SQLite's RAISE(ABORT) does.
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'integrity_constraint_violation'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        raise NotImplementedError(f"deploybot supports SQLite and PostgreSQL, not {_dialect()}")


def _drop_append_only_triggers() -> None:
    if _dialect() == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    elif _dialect() == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
