"""Keeps a session's Slack messages in step with its state, coalescing bursts of changes.

A burst of changes to one session (forty ticks in a second, fifty probe results) costs about
one ``chat.update`` per changed message per ``interval``: changes only mark the session dirty,
and a single flusher thread renders the *current* state from the database when it is due, so
the final state always wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from sqlalchemy.orm import Session, sessionmaker

from bot.config.schema import Config
from bot.domain import DeploySession
from bot.rendering.checklist import checklist_messages
from bot.rendering.limits import validate_message
from bot.rendering.session import summary_blocks, summary_text
from bot.slack.links import SlackLinks
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

SUMMARY = "summary"


class SessionPublisher:
    """Posts a session's summary and checklist thread, then updates them as it changes."""

    def __init__(
        self,
        *,
        client: WebClient,
        config: Config,
        session_factory: sessionmaker[Session],
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        links: SlackLinks | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.session_factory = session_factory
        self.interval = interval
        self.clock = clock
        self.links = links
        self._dirty: dict[int, float] = {}  # session id -> when it may next be published
        self._last_published: dict[int, float] = {}
        self._sent: dict[tuple[int, str], str] = {}  # (session, purpose) -> hash of blocks
        self._cond = threading.Condition()
        self._closed = False
        self._publishing = 0  # sessions taken off ``_dirty`` whose update is under way
        self._thread = threading.Thread(target=self._run, name="slack-publisher", daemon=True)
        self._thread.start()

    def post(self, session: DeploySession) -> tuple[str, str]:
        """Post a new session: the summary in the channel, the checklist in its thread.

        Returns:
            The summary message's (channel ID, ts).
        """
        assert session.id is not None
        env = self.config.environment(session.environment)
        blocks = summary_blocks(session, now=datetime.now(UTC))
        text = summary_text(session)
        validate_message(blocks, text=text)
        posted = self.client.chat_postMessage(channel=env.channel, text=text, blocks=blocks)
        channel, ts = str(posted["channel"]), str(posted["ts"])
        self._remember(session.id, SUMMARY, channel, ts, blocks)
        for message in checklist_messages(session):
            validate_message(message.blocks, text=message.text)
            reply = self.client.chat_postMessage(
                channel=channel, thread_ts=ts, text=message.text, blocks=message.blocks
            )
            self._remember(session.id, message.purpose, channel, str(reply["ts"]), message.blocks)
        return channel, ts

    def changed(self, session_id: int) -> None:
        """Note that a session changed; its messages are updated when next due."""
        with self._cond:
            due = self._last_published.get(session_id, 0.0) + self.interval
            self._dirty.setdefault(session_id, due)
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every pending change is published (tests, shutdown)."""
        deadline = self.clock() + timeout
        with self._cond:
            while (self._dirty or self._publishing) and self.clock() < deadline:
                self._cond.wait(0.05)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    wait = min(self._dirty.values(), default=self.clock() + 1) - self.clock()
                    self._cond.wait(max(wait, 0.01))
                if self._closed and not self._dirty:
                    return
                due = [sid for sid, at in self._dirty.items() if at <= self.clock()]
                for sid in due:
                    del self._dirty[sid]
                    self._last_published[sid] = self.clock()
                self._publishing = len(due)
            for sid in due:
                try:
                    self.publish(sid)
                except Exception:  # one session's failure must not stop the others
                    log.exception("could not update Slack messages", extra={"session_id": sid})
            with self._cond:
                self._publishing = 0
                self._cond.notify_all()

    def _due(self) -> bool:
        now = self.clock()
        return any(at <= now for at in self._dirty.values())

    def publish(self, session_id: int) -> int:
        """Update every message of the session whose content changed; returns how many."""
        with UnitOfWork(self.session_factory) as uow:
            session = uow.sessions.get(session_id)
            messages = uow.slack_messages.for_session(session_id)
        if SUMMARY not in messages:
            return 0  # not posted yet (or posting failed); nothing to update
        channel, summary_ts = messages[SUMMARY]
        incident = messages.get("incident")
        incident_link = self.links.message(*incident) if incident and self.links else None
        summary = summary_blocks(session, now=datetime.now(UTC), incident_link=incident_link)
        wanted = [(SUMMARY, summary_text(session), summary)]
        wanted += [(m.purpose, m.text, m.blocks) for m in checklist_messages(session)]
        updated = 0
        for purpose, text, blocks in wanted:
            digest = _digest(blocks)
            if self._sent.get((session_id, purpose)) == digest:
                continue
            validate_message(blocks, text=text)
            if purpose in messages:
                ch, ts = messages[purpose]
                self.client.chat_update(channel=ch, ts=ts, text=text, blocks=blocks)
                self._sent[(session_id, purpose)] = digest
            else:  # a section grew a part: post it in the thread
                reply = self.client.chat_postMessage(
                    channel=channel, thread_ts=summary_ts, text=text, blocks=blocks
                )
                self._remember(session_id, purpose, channel, str(reply["ts"]), blocks)
            updated += 1
        return updated

    def _remember(
        self, session_id: int, purpose: str, channel: str, ts: str, blocks: list[dict[str, Any]]
    ) -> None:
        with UnitOfWork(self.session_factory) as uow:
            uow.slack_messages.put(session_id, purpose, channel, ts)
            uow.commit()
        self._sent[(session_id, purpose)] = _digest(blocks)


def _digest(blocks: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(blocks, sort_keys=True).encode()).hexdigest()
