"""Delivers the outbox's Slack replies: notes in a session's thread or its incident thread,
and answers through a request's response URL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.outbox import PermanentFailure, RetryAfter
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

# Errors that no retry will fix; anything else (timeouts, 5xx) is tried again later.
PERMANENT = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "msg_too_long"}
)


class SlackDelivery:
    """The outbox handler for topic ``slack``."""

    def __init__(
        self,
        *,
        client: WebClient,
        session_factory: sessionmaker[Session],
        report: Callable[[dict[str, Any]], None] | None = None,
        home: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.client = client
        self.session_factory = session_factory
        self.report = report  # rows of kind "report" (bot.slack.reports.ReportPoster)
        self.home = home  # rows of kind "home" (bot.slack.home.HomePublisher)

    def deliver(self, payload: dict[str, Any]) -> None:
        try:
            if payload.get("kind") == "report" and self.report is not None:
                self.report(payload)
            elif payload.get("kind") == "home":
                if self.home is not None:
                    self.home(payload)
            elif payload.get("kind") == "announce":
                # A channel name (``#prod``) works here as well as an ID.
                self.client.chat_postMessage(channel=payload["channel"], text=payload["text"])
            else:
                self._reply(payload)
        except SlackApiError as error:
            code = str(error.response.get("error"))
            if code in PERMANENT:
                raise PermanentFailure(f"Slack refused the message: {code}") from error
            raise

    def _reply(self, payload: dict[str, Any]) -> None:
        sid, purpose = int(payload["session_id"]), str(payload["purpose"])
        with UnitOfWork(self.session_factory) as uow:
            thread = uow.slack_messages.get(sid, purpose)
        if thread is None:
            if payload.get("skip_without_thread"):
                return
            raise RetryAfter(2.0)  # the thread's first message is still on its way
        channel, ts = thread
        self.client.chat_postMessage(channel=channel, thread_ts=ts, text=payload["text"])


def reply(response_url: Any, text: str) -> None:
    """An ephemeral answer through a request's response URL (valid 30 minutes, 5 uses).

    Best effort: the answer is a courtesy to the person who asked; what happened is in the
    session's messages and the audit log either way.
    """
    if not isinstance(response_url, str) or not response_url:
        return
    try:
        WebhookClient(response_url, timeout=10).send(
            text=text, response_type="ephemeral", replace_original=False
        )
    except Exception:  # an expired URL, Slack away: nobody else is waiting for this answer
        log.warning("could not answer through the response URL", exc_info=True)
