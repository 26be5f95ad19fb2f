"""Keeps a session's Slack messages in step with its stored state: the outbox handler of
topic ``publish``, which any replica may run.

Every saved change writes a ``publish`` row for the session's new revision (see
:mod:`bot.app.effects`). Rows of one session share an ordering key, so the outbox hands
them out one at a time, oldest first, across all replicas: at most one replica publishes a
session at a time. The handler renders the session's *current* state, and each message
record keeps the revision and digest it shows, so an update is sent only for a newer
revision whose render differs, never an older one; rows for revisions already shown are
no-ops. A burst is coalesced to about one ``chat.update`` per changed message per
``interval``: a row due sooner is deferred (:class:`Defer`) until the interval has passed
since the session's last update. A failed call raises, and the outbox retries it with
backoff (Retry-After on 429) until it lands; a dead replica's rows are taken over when
their lease runs out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session, sessionmaker

from bot.config.schema import Config
from bot.domain import DeploySession
from bot.rendering.checklist import checklist_messages
from bot.rendering.limits import JsonBlock, validate_message
from bot.rendering.session import summary_blocks, summary_text
from bot.slack.links import SlackLinks
from bot.storage import outbox
from bot.storage.outbox import Defer, PermanentFailure, RetryAfter
from bot.storage.repositories import SlackMessage
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

SUMMARY = "summary"
INCIDENT = "incident"  # posted by bot.slack.delivery; not one of the session's own messages

# Errors that no retry will fix; anything else (timeouts, 5xx) is tried again later.
PERMANENT = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "msg_too_long"}
)


def digest(blocks: list[JsonBlock]) -> str:
    return hashlib.sha256(json.dumps(blocks, sort_keys=True).encode()).hexdigest()


class SessionPublisher:
    """Posts a session's summary and checklist thread, then updates them as it changes."""

    def __init__(
        self,
        *,
        client: WebClient,
        config: Config,
        session_factory: sessionmaker[Session],
        interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        links: SlackLinks | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.session_factory = session_factory
        self.interval = timedelta(seconds=interval)
        self.clock = clock
        self.links = links

    def deliver(self, payload: dict[str, Any]) -> None:
        """Bring the session's messages up to its current revision (the outbox handler).

        Raises:
            Defer: the session's messages were updated less than ``interval`` ago.
            RetryAfter: Slack is rate limiting.
            PermanentFailure: Slack refused in a way no retry fixes (not in channel).
        """
        session_id, wanted = int(payload["session_id"]), int(payload.get("revision", 0))
        with UnitOfWork(self.session_factory) as uow:
            session = uow.sessions.get(session_id)
            revision = uow.sessions.revision(session_id)
            messages = uow.slack_messages.for_session(session_id)
        own = {p: m for p, m in messages.items() if p != INCIDENT}
        if SUMMARY in own and min(m.version for m in own.values()) >= wanted:
            return  # a newer render is already shown
        last = max((m.sent_at for m in own.values() if m.sent_at), default=None)
        if last is not None and self.clock() - last < self.interval:
            raise Defer((self.interval - (self.clock() - last)).total_seconds())
        try:
            self._publish(session, revision, messages)
        except SlackApiError as error:
            code = str(error.response.get("error"))
            if code in PERMANENT:
                raise PermanentFailure(code) from error  # /deploy start shows it as it is
            if error.response.status_code == 429:
                retry = float(error.response.headers.get("Retry-After", 1) or 1)
                raise RetryAfter(retry, f"Slack rate limit on {error.response.api_url}") from error
            raise

    def _publish(
        self, session: DeploySession, revision: int, messages: dict[str, SlackMessage]
    ) -> None:
        assert session.id is not None
        incident = messages.get(INCIDENT)
        link = (
            self.links.message(incident.channel, incident.ts) if incident and self.links else None
        )
        now = self.clock()
        wanted = [
            (SUMMARY, summary_text(session), summary_blocks(session, now=now, incident_link=link))
        ]
        wanted += [(m.purpose, m.text, m.blocks) for m in checklist_messages(session)]
        summary = messages.get(SUMMARY)
        for purpose, text, blocks in wanted:
            shown = messages.get(purpose)
            if shown is not None and shown.version >= revision:
                continue
            hashed = digest(blocks)
            if shown is not None and shown.digest == hashed:
                self._shown(session.id, purpose, revision, hashed, sent=False)
                continue
            validate_message(blocks, text=text)
            if shown is not None:
                self.client.chat_update(
                    channel=shown.channel, ts=shown.ts, text=text, blocks=blocks
                )
                self._shown(session.id, purpose, revision, hashed, sent=True)
                continue
            if summary is None:  # the session's first message, in the environment's channel
                channel = self.config.environment(session.environment).channel
                posted = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            else:  # the checklist thread, or a part a section grew
                posted = self.client.chat_postMessage(
                    channel=summary.channel, thread_ts=summary.ts, text=text, blocks=blocks
                )
            record = SlackMessage(str(posted["channel"]), str(posted["ts"]), revision, hashed, now)
            self._posted(session.id, purpose, record)
            if purpose == SUMMARY:
                summary = record

    def _shown(
        self, session_id: int, purpose: str, revision: int, hashed: str, *, sent: bool
    ) -> None:
        with UnitOfWork(self.session_factory) as uow:
            at = self.clock() if sent else None
            uow.slack_messages.shown(
                session_id, purpose, version=revision, digest=hashed, sent_at=at
            )
            uow.commit()

    def _posted(self, session_id: int, purpose: str, message: SlackMessage) -> None:
        with UnitOfWork(self.session_factory) as uow:
            uow.slack_messages.put(
                session_id,
                purpose,
                message.channel,
                message.ts,
                version=message.version,
                digest=message.digest,
                sent_at=message.sent_at,
            )
            uow.commit()

    def pending(self, session_id: int | None = None) -> int:
        """How many publications are still to do (for tests and shutdown)."""
        with self.session_factory() as db:
            return outbox.pending(db, "publish", session_id)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every pending publication is done (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.02)

    def failure(self, session_id: int, timeout: float) -> str | None:
        """Wait up to ``timeout`` for the session's first post; why Slack refused it, or None
        (posted, or still on its way)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.session_factory() as db:
                outcome = outbox.first_outcome(db, "publish", session_id)
            if outcome is not None:
                delivered, error = outcome
                return None if delivered else str(error)
            time.sleep(0.02)
        return None
