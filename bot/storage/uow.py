"""The unit of work: one transaction, the repositories that share it, and retries."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.errors import ConcurrencyConflict
from bot.storage.db import taking_turns
from bot.storage.inbox import Inbox
from bot.storage.outbox import Outbox
from bot.storage.probe_runs import ProbeRunRepository
from bot.storage.queue import DeployQueue
from bot.storage.repositories import (
    AuditLog,
    LockRepository,
    SessionRepository,
    SlackMessageRepository,
    conflicts_translated,
)
from bot.storage.schedule_slots import ScheduleSlots
from bot.storage.summaries import SessionSummaries

T = TypeVar("T")
OUTBOX = Outbox()


class UnitOfWork:
    """One database transaction and the repositories working in it.

    ``with UnitOfWork(factory) as uow: ...; uow.commit()``. Leaving the block without
    committing rolls everything back.
    """

    sessions: SessionRepository
    summaries: SessionSummaries
    audit: AuditLog
    locks: LockRepository
    slack_messages: SlackMessageRepository
    probe_runs: ProbeRunRepository
    inbox: Inbox
    schedule_slots: ScheduleSlots
    queue: DeployQueue

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._db: Session | None = None
        self._after_commit: list[Callable[[], None]] = []

    def __enter__(self) -> Self:
        self._turn = taking_turns(self._factory)
        self._turn.__enter__()
        try:
            self._db = db = self._factory()
        except BaseException:
            self._turn.__exit__(None, None, None)
            raise
        self.sessions = SessionRepository(db)
        self.summaries = SessionSummaries(db)
        self.audit = AuditLog(db)
        self.locks = LockRepository(db)
        self.slack_messages = SlackMessageRepository(db)
        self.probe_runs = ProbeRunRepository(db)
        self.inbox = Inbox(db)
        self.schedule_slots = ScheduleSlots(db)
        self.queue = DeployQueue(db)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._db is not None:
            self._db.close()  # rolls back whatever was not committed
            self._db = None
            self._turn.__exit__(exc_type, exc, tb)

    def commit(self) -> None:
        """Commit everything done in this unit of work.

        Raises:
            ConcurrencyConflict: a session saved here was changed by someone else first.
        """
        db = self._active()
        with conflicts_translated(db):
            db.commit()
        hooks, self._after_commit = self._after_commit, []
        for hook in hooks:
            hook()

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once this unit of work has committed (never if it rolls back)."""
        self._after_commit.append(hook)

    def enqueue(
        self,
        *,
        topic: str,
        key: str,
        payload: dict[str, Any],
        at: datetime,
        session_id: int | None = None,
        ordering_key: str | None = None,
        due: datetime | None = None,
    ) -> bool:
        """Record an effect in this transaction (see :meth:`Outbox.enqueue`)."""
        return OUTBOX.enqueue(
            self._active(),
            topic=topic,
            key=key,
            payload=payload,
            session_id=session_id,
            at=at,
            ordering_key=ordering_key,
            due=due,
        )

    @property
    def db(self) -> Session:
        """The transaction's session, for writers outside the repositories (the outbox)."""
        return self._active()

    def rollback(self) -> None:
        """Discard everything done since the last commit."""
        self._active().rollback()

    def _active(self) -> Session:
        if self._db is None:
            raise RuntimeError("use the UnitOfWork in a `with` block")
        return self._db


def run_in_transaction(
    factory: sessionmaker[Session], fn: Callable[[UnitOfWork], T], *, within: float = 20.0
) -> T:
    """Run ``fn`` in a fresh unit of work, again if a concurrent change made it conflict.

    ``fn`` commits itself (or not, when it has nothing to write). Sessions are loaded with a
    row lock on PostgreSQL, so conflicts are rare there; on SQLite (one writer) a burst of
    clicks retries, with a short, random, growing sleep, until ``within`` seconds have passed:
    a click is queued, never refused, for a concurrent change.

    Raises:
        ConcurrencyConflict: still conflicting after ``within`` seconds.
    """
    deadline = time.monotonic() + within
    attempt = 0
    while True:
        attempt += 1
        try:
            with UnitOfWork(factory) as uow:
                return fn(uow)
        except ConcurrencyConflict:
            if time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0, min(0.1, 0.002 * 2 ** min(attempt, 10))))  # full jitter
