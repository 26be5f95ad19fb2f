"""The outbox table's writer: effects recorded in the caller's transaction.

A page or a Slack update is first written to the ``outbox`` table in the same transaction as
the state change that calls for it (:meth:`Outbox.enqueue`), so either both happen or
neither does. :mod:`bot.workers.outbox` delivers the rows; handlers raise :class:`RetryAfter`
or :class:`PermanentFailure` to steer their retries.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.storage.models import OutboxRow

TOPICS = frozenset({"pagerduty", "slack", "publish", "probes", "rollback", "schedule", "deploy"})
"""pagerduty: events; slack: incident and thread messages; publish: refresh a session's
messages; probes: a probe round; rollback: a rollback's steps; schedule: a session's next
expiry, reminder or monitoring round, due at its time (:mod:`bot.app.schedules`); deploy: a
session's deploy steps (:mod:`bot.app.deploy_steps`)."""
OUTBOX_ID = "outbox_id"
"""The key under which a handler finds the row's id in the payload it is given."""


class RetryAfter(Exception):
    """Raised by a handler to ask for the next attempt after a given delay (HTTP 429).

    Args:
        seconds: how long to wait before the next attempt.
        message: why; stored as the row's ``last_error``.
    """

    def __init__(self, seconds: float, message: str = "") -> None:
        self.seconds = max(0.0, float(seconds))
        super().__init__(message or f"asked to retry after {self.seconds:g} s")


class Defer(Exception):
    """Raised by a handler when the effect is not due yet (coalescing): try again after
    ``seconds``. Unlike :class:`RetryAfter` it is not a failed attempt."""

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, float(seconds))
        super().__init__(f"deferred by {self.seconds:g} s")


class PermanentFailure(Exception):
    """Raised by a handler when trying again cannot help (bad request, missing secret).

    The row is marked failed at once with ``str(error)`` as its ``last_error``.
    """


def utcnow() -> datetime:
    return datetime.now(UTC)


class Outbox:
    """Records effects in the caller's transaction.

    Args:
        topics: the topics rows may have; anything else is a programming error.
    """

    def __init__(self, topics: Collection[str] = TOPICS) -> None:
        self.topics = frozenset(topics)

    def enqueue(
        self,
        db: Session,
        *,
        topic: str,
        key: str,
        payload: Mapping[str, Any],
        session_id: int | None = None,
        at: datetime,
        ordering_key: str | None = None,
        due: datetime | None = None,
    ) -> bool:
        """Record an effect to deliver, in ``db``'s current transaction (the caller commits).

        Args:
            db: the caller's session; the row is committed or rolled back with its work.
            topic: which handler delivers it (``"pagerduty"``, ``"slack"``).
            key: the effect's idempotency key, unique per topic.
            payload: JSON-serialisable data for the handler; never put secrets here.
            session_id: the deploy session the effect belongs to, if any.
            at: now (timezone-aware); the row is due from then.
            ordering_key: rows of one topic with the same ordering key are delivered one at a
                time in the order they were enqueued (for PagerDuty: the ``dedup_key``, so a
                resolve never overtakes the trigger it resolves).
            due: when the row comes due, if later than ``at`` (a scheduled job).

        Returns:
            True if the row was added, False if ``(topic, key)`` was already recorded. A
            duplicate does not abort the surrounding transaction.

        Raises:
            ValueError: unknown topic, empty key, or naive ``at``.
        """
        if topic not in self.topics:
            raise ValueError(
                f"unknown outbox topic {topic!r}; expected one of {sorted(self.topics)}"
            )
        if not key:
            raise ValueError("an outbox row needs an idempotency key")
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at!r}: the outbox takes aware timestamps only")
        values = {
            "topic": topic,
            "idempotency_key": key,
            "ordering_key": ordering_key,
            "payload": dict(payload),
            "session_id": session_id,
            "created_at": at,
            "attempts": 0,
            "next_attempt_at": due or at,
        }
        dialect = db.get_bind().dialect.name
        if dialect == "postgresql":
            pg_stmt = postgresql.insert(OutboxRow).values(values)
            statement = pg_stmt.on_conflict_do_nothing(
                index_elements=["topic", "idempotency_key"]
            ).returning(OutboxRow.id)
        elif dialect == "sqlite":
            lite_stmt = sqlite.insert(OutboxRow).values(values)
            statement = lite_stmt.on_conflict_do_nothing(
                index_elements=["topic", "idempotency_key"]
            ).returning(OutboxRow.id)
        else:
            raise NotImplementedError(f"deploybot supports SQLite and PostgreSQL, not {dialect}")
        return db.execute(statement).scalar_one_or_none() is not None


def arm(db: Session, rows: Collection[Mapping[str, Any]], *, at: datetime) -> None:
    """Record scheduled rows, in the caller's transaction: ``topic``, ``key``, ``payload``,
    ``session_id`` and ``due`` each.

    A row already recorded and not yet delivered keeps the earlier of its due times (a
    schedule shortened in the config takes effect); a delivered one is left alone.
    One statement per 500 rows, whatever their number.
    """
    values = {
        (str(row["topic"]), str(row["key"])): {
            "topic": row["topic"],
            "idempotency_key": row["key"],
            "ordering_key": None,
            "payload": dict(row["payload"]),
            "session_id": row.get("session_id"),
            "created_at": at,
            "attempts": 0,
            "next_attempt_at": row["due"],
        }
        for row in rows
    }
    batch = list(values.values())
    dialect = db.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"deploybot supports SQLite and PostgreSQL, not {dialect}")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for start in range(0, len(batch), 500):
        statement = insert(OutboxRow).values(batch[start : start + 500])
        sooner = statement.excluded.next_attempt_at
        db.execute(
            statement.on_conflict_do_update(
                index_elements=["topic", "idempotency_key"],
                set_={"next_attempt_at": sooner},
                where=and_(
                    OutboxRow.delivered_at.is_(None),
                    OutboxRow.failed_at.is_(None),
                    sooner < OutboxRow.next_attempt_at,
                ),
            )
        )


def next_due(
    db: Session, topics: Collection[str], *, before: datetime | None = None
) -> datetime | None:
    """When the next undelivered row of ``topics`` comes due (None: none, or none before
    ``before``).

    With ``before``, one range scan of the ``(delivered_at, next_attempt_at)`` index up to
    it: rows scheduled further ahead (a session's expiry in two hours) are not read, so an
    idle poll costs the same however many sessions are open.
    """
    query = select(func.min(OutboxRow.next_attempt_at)).where(
        OutboxRow.delivered_at.is_(None),
        OutboxRow.failed_at.is_(None),
        OutboxRow.topic.in_(topics),
    )
    if before is not None:
        query = query.where(OutboxRow.next_attempt_at <= before)
    return db.scalar(query)


def pending(db: Session, topic: str, session_id: int | None = None) -> int:
    """How many rows of ``topic`` (of one session, if given) are still to be delivered."""
    query = select(func.count()).where(
        OutboxRow.topic == topic, OutboxRow.delivered_at.is_(None), OutboxRow.failed_at.is_(None)
    )
    if session_id is not None:
        query = query.where(OutboxRow.session_id == session_id)
    return int(db.scalar(query) or 0)


def first_outcome(db: Session, topic: str, session_id: int) -> tuple[bool, str | None] | None:
    """How a session's first row of ``topic`` ended: (delivered, why it failed), or None
    while it is still pending."""
    row = db.execute(
        select(OutboxRow.delivered_at, OutboxRow.failed_at, OutboxRow.last_error)
        .where(OutboxRow.topic == topic, OutboxRow.session_id == session_id)
        .order_by(OutboxRow.id)
        .limit(1)
    ).first()
    if row is None or (row.delivered_at is None and row.failed_at is None):
        return None
    return row.delivered_at is not None, row.last_error
