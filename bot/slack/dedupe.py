"""Remembers which Slack requests were handled, so that a retry is not handled twice.

Keys go into memory at once and into the database in the background: the acknowledgement
never waits on a database write, and a retry (which Slack sends seconds later, possibly to
another replica) finds the key in either place.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.models import SlackRequest

log = logging.getLogger(__name__)


class RequestLedger:
    """A table of request keys, with a bounded in-memory cache in front of it."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        writer: Executor,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        remember: int = 10_000,
    ) -> None:
        self.session_factory = session_factory
        self.writer = writer
        self.clock = clock
        self.remember = remember
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str, *, is_retry: bool) -> bool:
        """Record ``key``; False if it was seen before (here, or on any replica for a retry)."""
        with self._lock:
            if key in self._recent:
                return False
            self._recent[key] = None
            if len(self._recent) > self.remember:
                self._recent.popitem(last=False)
        if is_retry and self._stored(key):
            return False
        self.writer.submit(self._store, key)
        return True

    def _stored(self, key: str) -> bool:
        with self.session_factory() as db:
            return db.scalar(select(SlackRequest.key).where(SlackRequest.key == key)) is not None

    def _store(self, key: str) -> None:
        with self.session_factory() as db:
            try:
                db.execute(insert(SlackRequest).values(key=key, received_at=self.clock()))
                db.commit()
            except IntegrityError:
                db.rollback()  # another replica handled the same request first
            except Exception:
                log.exception("could not record a Slack request key")
