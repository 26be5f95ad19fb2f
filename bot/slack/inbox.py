"""A click acknowledged is a click kept: the Slack inbox, in front of every listener.

Bolt verifies each request's signature first; then :meth:`SlackInbox.middleware` records
it in one indexed insert keyed by its Slack identity, before anything acknowledges it.
A retry or a replay reaching any replica, restarted or not, finds the row and is answered
with an empty 200, changing nothing. The listener marks the row done in the same
transaction as the change it asks for (see :meth:`bot.app.sessions.DeployService.handle`).

The web tier only verifies, records and acknowledges: a request :func:`handed_off` is
answered with an empty 200 right after its insert, and its listener runs on a worker
(:class:`bot.slack.inbox_workers.InboxWorkers`), in this process (handed over through a
queue) or in a ``deploybot worker`` process (which claims it from the table). The few
requests whose answer is the HTTP response itself run inline, where they arrive.
If a process dies after the ack, the row stays pending; once its claim runs out, any
process's workers dispatch it through the app again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.request import BoltRequest
from sqlalchemy.orm import Session, sessionmaker

from bot.rendering.ids import ActionId
from bot.storage.db import database_unreachable
from bot.storage.inbox import request_key
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

REDELIVERY = "inbox_redelivery"  # context key: this request comes from the inbox itself

# Clicks that open a modal: Slack's trigger_id is good for 3 seconds only, so these are
# handled where they arrive (a read and a views.open), never queued behind other work.
MODAL_OPENERS = frozenset({ActionId.SKIP, ActionId.ABORT})

HandOff = Callable[[str, dict[str, Any]], None]


def handed_off(body: Any) -> bool:
    """Whether the web tier acknowledges ``body`` at once and leaves its work to a worker.

    Handed off: slash commands and clicks (``block_actions``); they answer through their
    response_url, so their HTTP answer is an empty 200 anyway. Everything else is handled
    inline, where it arrives; the list is short:

    - modal submissions (``view_submission``): their answer (errors shown in the form, or
      the form replaced) is the HTTP response;
    - clicks that open a modal (:data:`MODAL_OPENERS`): the trigger_id expires in 3 s;
    - events (``app_home_opened``, which redraws a person's App Home): not recorded in
      the inbox (they carry no trigger_id), acknowledged by Bolt at once, their listener
      running where they arrive;
    - requests of other types (shortcuts, options): deploybot registers no listener for
      them (``url_verification`` and ``ssl_check`` are answered by Bolt before the inbox).
    """
    if not isinstance(body, dict):
        return False
    if body.get("command") and "type" not in body:
        return True
    if body.get("type") != "block_actions":
        return False
    actions = body.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else None
    return isinstance(first, dict) and first.get("action_id") not in MODAL_OPENERS


class SlackInbox:
    """Records requests before they are acknowledged; hands them over to the workers.

    Args:
        claim: how long the process that holds a request owns it before another may take it.
        hand_off: called with each newly recorded request that :func:`handed_off` says
            goes to a worker, which is then acknowledged at once. None: every listener runs
            inline, where the request arrives (as when no worker runs in this process).
        shared: the web-only role: a request handed off is left to any process's workers
            (due at once) instead of being claimed by this one.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        claim: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        hand_off: HandOff | None = None,
        shared: bool = False,
    ) -> None:
        self.session_factory = session_factory
        self.claim = timedelta(seconds=claim)
        self.clock = clock
        self.hand_off = hand_off
        self.shared = shared
        self._received: OrderedDict[str, None] = OrderedDict()  # this process's, newest last
        self._received_lock = threading.Lock()

    def middleware(self, req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:
        """Bolt middleware: record the request, or answer a repeat with an empty 200; then
        hand it to a worker and acknowledge it, or let its listener run here."""
        key = request_key(req.body) if isinstance(req.body, dict) else None
        if key is not None and req.context.get(REDELIVERY) != key:
            later = self.hand_off is not None and handed_off(req.body)
            claim = timedelta(0) if later and self.shared else self.claim
            try:
                with UnitOfWork(self.session_factory) as uow:
                    first = uow.inbox.receive(key, req.body, at=self.clock(), claim=claim)
                    uow.commit()
            except Exception as error:
                if not database_unreachable(error):
                    raise
                log.warning("database unreachable: Slack request not recorded", exc_info=True)
                return not_recorded(req)
            if not first:
                log.info("repeated Slack request ignored", extra={"request_key": key})
                return BoltResponse(status=200, body="")
            if not (later and self.shared):
                self.hold([key])
            if later and self.hand_off is not None:
                self.hand_off(key, req.body)
                return acknowledged(req)
        if key is not None:
            req.context["request_key"] = key
        return next()

    def hold(self, keys: Iterable[str]) -> None:
        """Remember requests this process holds, to release them if it stops first."""
        with self._received_lock:
            for key in keys:
                self._received[key] = None
            while len(self._received) > 10_000:
                self._received.popitem(last=False)

    def release(self) -> int:
        """This process stops: the requests it holds and has not finished are released,
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

    def claim_due(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Claim up to ``limit`` requests nobody holds (left for the workers, or left
        unfinished by a process that stopped); this process holds them from now on."""
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            due = uow.inbox.claim_due(now=now, claim=self.claim, limit=limit)
            uow.commit()
        self.hold(key for key, _, _ in due)
        for key, _, received in due:
            if now - _aware(received) > self.claim:  # waited longer than a claim: held before
                log.warning("taking over an unfinished Slack request", extra={"request_key": key})
        return [(key, body) for key, body, _ in due]


def acknowledged(req: BoltRequest) -> BoltResponse:
    """The web tier's answer to a request handed to a worker: an empty 200, given through
    the request's ``ack`` (which the metrics middleware times, as a listener's would be)."""
    ack = req.context.ack
    answer = ack() if ack is not None else None
    return answer if answer is not None else BoltResponse(status=200, body="")


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


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
