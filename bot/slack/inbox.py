"""A click acknowledged is a click kept: the Slack inbox, in front of every listener.

Bolt verifies each request's signature first; then :meth:`SlackInbox.middleware` records
it in one indexed insert keyed by its Slack identity, before any listener acknowledges it.
A retry or a replay reaching any replica, restarted or not, finds the row and is answered
with an empty 200, changing nothing. The listener marks the row done in the same
transaction as the change it asks for (see :meth:`bot.app.sessions.DeployService.handle`).
If the receiving replica dies after the ack, the row stays pending; once its claim runs
out, :class:`InboxWorker` on any replica dispatches it through the app again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.request import BoltRequest
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.inbox import request_key
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

REDELIVERY = "inbox_redelivery"  # context key: this request comes from the inbox itself


class SlackInbox:
    """Records requests before they are acknowledged; hands abandoned ones over.

    Args:
        claim: how long the receiving replica owns a request before another may take it.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        claim: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session_factory = session_factory
        self.claim = timedelta(seconds=claim)
        self.clock = clock

    def middleware(self, req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:
        """Bolt middleware: record the request, or answer a repeat with an empty 200."""
        key = request_key(req.body) if isinstance(req.body, dict) else None
        if key is not None and req.context.get(REDELIVERY) != key:
            with UnitOfWork(self.session_factory) as uow:
                first = uow.inbox.receive(key, req.body, at=self.clock(), claim=self.claim)
                uow.commit()
            if not first:
                log.info("repeated Slack request ignored", extra={"request_key": key})
                return BoltResponse(status=200, body="")
        if key is not None:
            req.context["request_key"] = key
        return next()

    def take_over(self, app: App, limit: int = 10) -> int:
        """Dispatch requests whose receiver stopped before finishing them; returns how many."""
        with UnitOfWork(self.session_factory) as uow:
            abandoned = uow.inbox.claim_abandoned(now=self.clock(), claim=self.claim, limit=limit)
            uow.commit()
        for key, body in abandoned:
            log.warning("taking over an unfinished Slack request", extra={"request_key": key})
            # Socket Mode requests skip Bolt's signature check: this one was verified when it
            # arrived, and comes from our own database.
            app.dispatch(BoltRequest(body=body, mode="socket_mode", context={REDELIVERY: key}))
        return len(abandoned)


class InboxWorker:
    """A daemon thread that takes over abandoned requests every ``poll`` seconds."""

    def __init__(self, inbox: SlackInbox, app: App, *, poll: float = 5.0) -> None:
        self.inbox = inbox
        self.app = app
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="slack-inbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.inbox.take_over(self.app)
            except Exception:  # the database may be briefly away: try again next poll
                log.exception("inbox take-over failed")
