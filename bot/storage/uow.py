"""The unit of work: one transaction, the repositories that share it, and retries."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from bot.domain.errors import ConcurrencyConflict
from bot.storage.probe_runs import ProbeRunRepository
from bot.storage.repositories import (
    AuditLog,
    LockRepository,
    SessionRepository,
    SlackMessageRepository,
    conflicts_translated,
)
from bot.storage.schedule_slots import ScheduleSlots

T = TypeVar("T")


class UnitOfWork:
    """One database transaction and the repositories working in it.

    ``with UnitOfWork(factory) as uow: ...; uow.commit()``. Leaving the block without
    committing rolls everything back.
    """

    sessions: SessionRepository
    audit: AuditLog
    locks: LockRepository
    slack_messages: SlackMessageRepository
    probe_runs: ProbeRunRepository
    schedule_slots: ScheduleSlots

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self._db: Session | None = None

    def __enter__(self) -> Self:
        self._db = db = self._factory()
        self.sessions = SessionRepository(db)
        self.audit = AuditLog(db)
        self.locks = LockRepository(db)
        self.slack_messages = SlackMessageRepository(db)
        self.probe_runs = ProbeRunRepository(db)
        self.schedule_slots = ScheduleSlots(db)
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

    def commit(self) -> None:
        """Commit everything done in this unit of work.

        Raises:
            ConcurrencyConflict: a session saved here was changed by someone else first.
        """
        db = self._active()
        with conflicts_translated(db):
            db.commit()

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
    factory: sessionmaker[Session], fn: Callable[[UnitOfWork], T], *, attempts: int = 5
) -> T:
    """Run ``fn`` in a fresh unit of work, again if a concurrent change made it conflict.

    ``fn`` commits itself (or not, when it has nothing to write). Between attempts it
    sleeps a short, random, growing time so that racing writers spread out.

    Raises:
        ConcurrencyConflict: still conflicting after ``attempts`` tries.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            with UnitOfWork(factory) as uow:
                return fn(uow)
        except ConcurrencyConflict:
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))  # full jitter
    raise AssertionError("unreachable")  # pragma: no cover
