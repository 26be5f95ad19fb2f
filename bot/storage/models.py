"""SQLAlchemy 2 typed models: the tables deploybot keeps, as the migrations create them.

The migrations in ``migrations/versions`` are the schema's source of truth; these classes
describe the same tables for the ORM and must be kept in step with them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.domain.inputs import NAME_MAX, SLACK_ID_MAX, VERSION_MAX

DIGEST_LENGTH = 64  # SHA-256 in hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC and always read back as UTC-aware.

    SQLite has no timezone type: SQLAlchemy stores the wall time and drops the offset, so
    values are converted to UTC on the way in and marked UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: deploybot stores aware timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDocument}


class SessionRow(Base):
    """One deploy session; ``revision`` makes every UPDATE conditional (optimistic locking)."""

    __tablename__ = "deploy_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(NAME_MAX))
    service: Mapped[str] = mapped_column(String(NAME_MAX), default="", server_default="")
    version: Mapped[str] = mapped_column(String(VERSION_MAX), default="", server_default="")
    requester: Mapped[str] = mapped_column(String(SLACK_ID_MAX))
    state: Mapped[str] = mapped_column(String(32))
    is_open: Mapped[bool]
    # Frozen when the session opens; read only when the digest is not in the process's
    # cache (bot/storage/frozen_parts.py), hence deferred: a load does not fetch them.
    checklist: Mapped[dict[str, Any]] = mapped_column(deferred=True)
    policy: Mapped[dict[str, Any]] = mapped_column(deferred=True)
    checklist_digest: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH))
    policy_digest: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH))
    progress: Mapped[dict[str, Any]]
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None]
    revision: Mapped[int] = mapped_column(Integer)
    # The summary (bot.domain.summary), kept by every save so that lists read only these.
    items_settled: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    items_failing: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    signoffs_missing: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __mapper_args__ = {"version_id_col": revision}
    __table_args__ = (
        # One open session per environment and service, guaranteed by the database.
        Index(
            "uq_deploy_sessions_open",
            "environment",
            "service",
            unique=True,
            sqlite_where=text("is_open"),
            postgresql_where=text("is_open"),
        ),
        # `/deploy list`: open sessions by id, one page at a time, and their count. SQLite
        # uses a partial index only for a query that says its WHERE, and SQLAlchemy writes
        # the flag there as `is_open = 1`.
        Index(
            "ix_deploy_sessions_open_id",
            "id",
            sqlite_where=text("is_open = 1"),
            postgresql_where=text("is_open"),
        ),
        # People type these ids: never hand out one that was used before.
        {"sqlite_autoincrement": True},
    )


class AuditEventRow(Base):
    """One audited fact. Database triggers refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("deploy_sessions.id"), index=True)
    environment: Mapped[str | None] = mapped_column(String(NAME_MAX))
    actor: Mapped[str] = mapped_column(String(SLACK_ID_MAX))
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    at: Mapped[datetime]


class EnvironmentLockRow(Base):
    __tablename__ = "environment_locks"

    environment: Mapped[str] = mapped_column(String(NAME_MAX), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    locked_by: Mapped[str] = mapped_column(String(SLACK_ID_MAX))
    locked_at: Mapped[datetime]


class SlackMessageRow(Base):
    """Which Slack message shows what part of a session (summary, a section, the incident).

    ``version`` is the session revision the message shows and ``digest`` a hash of its
    blocks: an update is sent only for a newer revision whose render differs.
    """

    __tablename__ = "slack_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("deploy_sessions.id"))
    purpose: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(64))
    ts: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    digest: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("session_id", "purpose", name="uq_slack_messages_purpose"),)


class InboxRow(Base):
    """A Slack request, recorded before it is acknowledged; the key makes "first time?" atomic.

    ``done_at`` is set in the transaction that applies it; until then the receiving replica
    owns it up to ``claimed_until``, after which any replica may process it.
    """

    __tablename__ = "slack_inbox"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column()
    claimed_until: Mapped[datetime]
    done_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_slack_inbox_pending", "done_at", "claimed_until"),
        Index("ix_slack_inbox_received", "received_at"),
    )


class ProbeRunRow(Base):
    """One run of one probe: for a session's item, or for an environment (CLI, monitoring)."""

    __tablename__ = "probe_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("deploy_sessions.id"), index=True)
    environment: Mapped[str] = mapped_column(String(NAME_MAX))
    probe: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    ok: Mapped[bool]
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]


class ScheduleSlotRow(Base):
    """A scheduled slot that fired; the primary key keeps a slot from firing twice."""

    __tablename__ = "schedule_slots"

    session_id: Mapped[int] = mapped_column(ForeignKey("deploy_sessions.id"), primary_key=True)
    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    fired_at: Mapped[datetime]


class QueueEntryRow(Base):
    """A place in an environment's deploy queue (:mod:`bot.domain.queue`)."""

    __tablename__ = "deploy_queue"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(NAME_MAX))
    service: Mapped[str] = mapped_column(String(NAME_MAX), default="", server_default="")
    user_id: Mapped[str] = mapped_column(String(SLACK_ID_MAX))
    joined_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    called_at: Mapped[datetime | None]
    turn_until: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_deploy_queue_lane", "environment", "service", "state"),
        # One active place per person and lane, whatever replica adds it.
        Index(
            "uq_deploy_queue_active",
            "environment",
            "service",
            "user_id",
            unique=True,
            sqlite_where=text("state IN ('waiting', 'called')"),
            postgresql_where=text("state IN ('waiting', 'called')"),
        ),
        {"sqlite_autoincrement": True},
    )


class ProbeRoundRow(Base):
    """A probe round in progress: which process runs it, and when that process last said
    it still does. A round whose owner stopped (no heartbeat for a lease) left its items
    "running"; any replica then marks them interrupted."""

    __tablename__ = "probe_rounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("deploy_sessions.id"))
    owner: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_probe_rounds_open", "finished_at", "heartbeat_at"),
        {"sqlite_autoincrement": True},
    )


# APScheduler 3's SQLAlchemyJobStore table, created by migration 0002. Nothing writes it any
# more (the leader derives its jobs from the sessions and keeps them in memory); it stays
# here, in step with the migrations, until a migration drops it.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class OutboxRow(Base):
    """An effect that must not be lost (a page, a Slack update), waiting for the outbox worker.

    ``(topic, idempotency_key)`` is unique, so recording the same effect twice is a no-op.
    Undelivered rows with ``failed_at`` unset are due at ``next_attempt_at``; a worker leases
    a row by moving ``next_attempt_at`` ahead before it delivers.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    ordering_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]]
    session_id: Mapped[int | None] = mapped_column(ForeignKey("deploy_sessions.id"))
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("topic", "idempotency_key", name="uq_outbox_topic_key"),
        Index("ix_outbox_due", "delivered_at", "next_attempt_at"),
        Index("ix_outbox_ordering", "topic", "ordering_key"),
        {"sqlite_autoincrement": True},
    )
