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
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.request import BoltRequest
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.db import database_unreachable
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
        self._received: OrderedDict[str, None] = OrderedDict()  # this process's, newest last
        self._received_lock = threading.Lock()

    def middleware(self, req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:
        """Bolt middleware: record the request, or answer a repeat with an empty 200."""
        key = request_key(req.body) if isinstance(req.body, dict) else None
        if key is not None and req.context.get(REDELIVERY) != key:
            try:
                with UnitOfWork(self.session_factory) as uow:
                    first = uow.inbox.receive(key, req.body, at=self.clock(), claim=self.claim)
                    uow.commit()
            except Exception as error:
                if not database_unreachable(error):
                    raise
                log.warning("database unreachable: Slack request not recorded", exc_info=True)
                return not_recorded(req)
            if not first:
                log.info("repeated Slack request ignored", extra={"request_key": key})
                return BoltResponse(status=200, body="")
            with self._received_lock:
                self._received[key] = None
                if len(self._received) > 10_000:
                    self._received.popitem(last=False)
        if key is not None:
            req.context["request_key"] = key
        return next()

    def release(self) -> int:
        """This process stops: the requests it received and has not finished are released,
        so another replica takes them over at once rather than when their claim runs out."""
        with self._received_lock:
            keys = list(self._received)
            self._received.clear()
        released = 0
        with UnitOfWork(self.session_factory) as uow:
            for start in range(0, len(keys), 500):
                released += uow.inbox.release(keys[start : start + 500], at=self.clock())
            uow.commit()
        if released:
            log.warning("released %d unfinished Slack request(s)", released)
        return released

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


def not_recorded_text(body: Any) -> str:
    """What to tell a person whose request the bot could not record (database away)."""
    command = isinstance(body, dict) and bool(body.get("command"))
    what, again = ("command", "Run it again") if command else ("click", "Click again")
    return (
        f":warning: deploybot can't reach its database right now, so your {what} was not "
        f"recorded. {again} in a minute."
    )


def not_recorded(req: BoltRequest) -> BoltResponse:
    """The answer to a request the database was not there to record: a 200 saying so, not
    a 500 (which Slack shows as a bare failure). A slash command's answer is the ack's body;
    a click's goes to its response URL, from a thread so that the ack is not held up."""
    text = not_recorded_text(req.body)
    if isinstance(req.body, dict) and req.body.get("command"):
        return BoltResponse(status=200, body=text)
    respond = req.context.respond
    if respond is not None:

        def tell() -> None:
            try:
                respond(text=text, response_type="ephemeral", replace_original=False)
            except Exception:  # Slack unreachable too: the log has it
                log.warning("could not tell the clicker their click was lost", exc_info=True)

        threading.Thread(target=tell, name="not-recorded", daemon=True).start()
    return BoltResponse(status=200, body="")


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
