"""Remembers which Slack requests were handled, so that a retry is not handled twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.models import SlackRequest


class RequestLedger:
    """A table of request keys; the primary key makes "first time?" atomic across replicas."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock

    def first_time(self, key: str) -> bool:
        with self.session_factory() as db:
            try:
                db.execute(insert(SlackRequest).values(key=key, received_at=self.clock()))
                db.commit()
            except IntegrityError:
                db.rollback()
                return False
        return True

    def forget_older_than(self, age: timedelta) -> int:
        """Slack retries within minutes; older keys only take space."""
        with self.session_factory() as db:
            result = db.execute(
                delete(SlackRequest).where(SlackRequest.received_at < self.clock() - age)
            )
            db.commit()
            return int(getattr(result, "rowcount", 0) or 0)
