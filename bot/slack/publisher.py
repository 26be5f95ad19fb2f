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

from bot.app.incidents import describe_target
from bot.app.probe_rounds import dashboard_links
from bot.config.schema import Config
from bot.domain import DeploySession
from bot.rendering.checklist import checklist_messages, checklist_purposes
from bot.rendering.incident import incident_message, incident_message_text
from bot.rendering.limits import JsonBlock, validate_message
from bot.rendering.session import summary_blocks, summary_text
from bot.slack.delivery import PERMANENT
from bot.slack.links import SlackLinks
from bot.storage import outbox
from bot.storage.outbox import Defer, PermanentFailure, RetryAfter
from bot.storage.repositories import SlackMessage, SlackMessageRepository
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

SUMMARY = "summary"
INCIDENT = "incident"  # the incident message, in the incident channel
REPORT_PREFIX = "report:"  # reports posted in the thread (bot.slack.reports), not ours to update


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
            messages = {
                purpose: message
                for purpose, message in uow.slack_messages.for_session(session_id).items()
                if not purpose.startswith(REPORT_PREFIX)
            }
            promoted = session.promoted_from
            source = None
            if promoted is not None:  # the summary links the deploy it was promoted from
                source = uow.slack_messages.for_session(promoted.session_id).get(SUMMARY)
        every = {SUMMARY, *checklist_purposes(session)} | (
            {INCIDENT} if session.incident else set()
        )
        if every <= messages.keys() and min(m.version for m in messages.values()) >= wanted:
            return  # a newer render is already shown, every message of it posted
        last = max((m.sent_at for m in messages.values() if m.sent_at), default=None)
        if last is not None and self.clock() - last < self.interval:
            raise Defer((self.interval - (self.clock() - last)).total_seconds())
        try:
            self._publish(session, revision, messages, self._link(source))
        except SlackApiError as error:
            code = str(error.response.get("error"))
            if code in PERMANENT:
                raise PermanentFailure(code) from error  # /deploy start shows it as it is
            if error.response.status_code == 429:
                retry = float(error.response.headers.get("Retry-After", 1) or 1)
                raise RetryAfter(retry, f"Slack rate limit on {error.response.api_url}") from error
            raise

    def _publish(
        self,
        session: DeploySession,
        revision: int,
        messages: dict[str, SlackMessage],
        promotion_link: str | None = None,
    ) -> None:
        """Show ``revision`` in every message: the incident first (the summary links to it),
        then the summary, then the checklist in the summary's thread."""
        env = self.config.environment(session.environment)
        now = self.clock()
        summary = messages.get(SUMMARY)
        incident = messages.get(INCIDENT)
        if session.incident is not None:
            link = self._link(summary)
            oncall = [m for role in env.oncall for m in self.config.roles.get(role, ())]
            blocks = incident_message(
                session,
                oncall=oncall,
                rollback=[describe_target(t) for t in env.rollback],
                session_link=link,
            )
            text = incident_message_text(session)
            channel = env.incident_channel or env.channel
            incident = self._show(session, revision, INCIDENT, text, blocks, incident, channel)
        blocks = summary_blocks(
            session, now=now, incident_link=self._link(incident), promotion_link=promotion_link
        )
        summary = self._show(
            session, revision, SUMMARY, summary_text(session), blocks, summary, env.channel
        )
        for part in checklist_messages(session, dashboard_links(self.config, session)):
            shown = messages.get(part.purpose)
            self._show(
                session, revision, part.purpose, part.text, part.blocks, shown, summary.channel,
                thread=summary.ts,
            )  # fmt: skip

    def _show(
        self,
        session: DeploySession,
        revision: int,
        purpose: str,
        text: str,
        blocks: list[JsonBlock],
        shown: SlackMessage | None,
        channel: str,
        *,
        thread: str | None = None,
    ) -> SlackMessage:
        """Bring one message to ``revision``: nothing, a record, an update or a first post."""
        assert session.id is not None
        if shown is not None and shown.version >= revision:
            return shown
        hashed = digest(blocks)
        if shown is not None and shown.digest == hashed:
            self._shown(session.id, purpose, revision, hashed, sent=False)
            return shown
        validate_message(blocks, text=text)
        if shown is not None:
            self.client.chat_update(channel=shown.channel, ts=shown.ts, text=text, blocks=blocks)
            self._shown(session.id, purpose, revision, hashed, sent=True)
            return shown
        posted = self.client.chat_postMessage(
            channel=channel, thread_ts=thread, text=text, blocks=blocks
        )
        record = SlackMessage(
            str(posted["channel"]), str(posted["ts"]), revision, hashed, self.clock()
        )
        self._posted(session.id, purpose, record)
        return record

    def _link(self, message: SlackMessage | None) -> str | None:
        if message is None or self.links is None:
            return None
        return self.links.message(message.channel, message.ts)

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
        """Wait up to ``timeout`` for the session's summary to be posted; why Slack refused
        it, or None (posted, or still on its way).

        Only the summary is waited for: a long checklist's thread (20 messages at Slack's
        one post per second per channel) goes on from the outbox after the answer.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.session_factory() as db:
                if SlackMessageRepository(db).get(session_id, SUMMARY) is not None:
                    return None
                outcome = outbox.first_outcome(db, "publish", session_id)
            if outcome is not None:
                delivered, error = outcome
                return None if delivered else str(error)
            time.sleep(0.02)
        return None
