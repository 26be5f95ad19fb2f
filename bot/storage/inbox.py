"""The Slack inbox: every request recorded once, before it is acknowledged.

A request is keyed by its Slack identity (:func:`request_key`), so a retry or a replay that
reaches any replica, restarted or not, finds its row and is not handled again. The row is
marked done in the same transaction as the change it asks for; a replica that dies after
the ack leaves it pending, and once its claim runs out another replica processes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.storage.models import InboxRow


def request_key(body: dict[str, Any]) -> str | None:
    """What identifies one user gesture across Slack's retries.

    Slack gives every command and interaction a fresh ``trigger_id``; a retry carries the
    same one. Block actions also carry ``action_ts``, distinct per click.
    """
    actions = body.get("actions")
    user = body.get("user")
    if isinstance(actions, list) and actions and isinstance(actions[0], dict):
        first, user_id = actions[0], user.get("id") if isinstance(user, dict) else None
        return f"action:{user_id}:{first.get('action_id')}:{first.get('action_ts')}"[:200]
    trigger = body.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return f"trigger:{trigger}"[:200]
    view = body.get("view")
    if isinstance(view, dict) and view.get("id") and view.get("hash"):
        return f"view:{view['id']}:{view['hash']}"[:200]
    return None


def _receive(insert: Any) -> Any:
    """The insert that records a request, built once: the web tier runs it for every
    request before the ack, and building it each time cost more than running it."""
    table = InboxRow.__table__
    return (
        insert(table)
        .values(
            {c: bindparam(c) for c in ("key", "body", "received_at", "claimed_until", "done_at")}
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.key)
    )


_RECEIVE = {"postgresql": _receive(postgresql.insert), "sqlite": _receive(sqlite.insert)}


class Inbox:
    """The ``slack_inbox`` table, in one unit of work's transaction."""

    def __init__(self, db: Session) -> None:
        self._db = db

    def receive(self, key: str, body: dict[str, Any], *, at: datetime, claim: timedelta) -> bool:
        """Record a request; False when it was recorded before (a retry or a replay)."""
        values = {
            "key": key,
            "body": body,
            "received_at": at,
            "claimed_until": at + claim,
            "done_at": None,
        }
        statement = _RECEIVE[self._db.get_bind().dialect.name]
        return self._db.execute(statement, values).scalar_one_or_none() is not None

    def finish(self, key: str, *, at: datetime) -> bool:
        """Mark a request done; False when it already was (by this replica or another).

        On PostgreSQL the UPDATE waits for a concurrent transaction finishing the same key,
        then finds it done: of two replicas processing one request, one applies it.
        """
        result = self._db.execute(
            update(InboxRow)
            .where(InboxRow.key == key, InboxRow.done_at.is_(None))
            .values(done_at=at)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    def release(self, keys: list[str], *, at: datetime) -> int:
        """Give up the claim on requests not finished yet: any replica may take them now."""
        if not keys:
            return 0
        result = self._db.execute(
            update(InboxRow)
            .where(InboxRow.key.in_(keys), InboxRow.done_at.is_(None))
            .values(claimed_until=at)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def claim_due(
        self, *, now: datetime, claim: timedelta, limit: int = 10
    ) -> list[tuple[str, dict[str, Any], datetime]]:
        """Claim up to ``limit`` requests that nobody holds, oldest first: those a web-only
        replica recorded for the workers, and those whose receiver stopped before finishing
        them. Returns (key, body, received at) of each.

        Safe across processes in one statement: PostgreSQL skips the rows another
        transaction is claiming (``FOR UPDATE SKIP LOCKED``) and re-checks the claim of a
        row another one has just claimed; SQLite runs one writer at a time, and the UPDATE
        claims only the rows still due when it runs.
        """
        # A materialized CTE: PostgreSQL may run a LIMIT subquery of ``IN`` more than once,
        # and claim more than ``limit`` rows.
        due = (
            select(InboxRow.key)
            .where(InboxRow.done_at.is_(None), InboxRow.claimed_until <= now)
            .order_by(InboxRow.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        rows = self._db.execute(
            update(InboxRow)
            .where(
                InboxRow.key.in_(select(due.c.key)),
                InboxRow.done_at.is_(None),
                InboxRow.claimed_until <= now,
            )
            .values(claimed_until=now + claim)
            .returning(InboxRow.key, InboxRow.body, InboxRow.received_at)
            .execution_options(synchronize_session=False)
        ).all()
        return sorted(((r.key, r.body, r.received_at) for r in rows), key=lambda r: r[2])
