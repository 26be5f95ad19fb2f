"""Pages that link to the incident thread: the outbox handler of topic ``pagerduty``.

A failure's trigger is written in the same transaction as the change that opens the
incident, while the incident message it should link to is posted afterwards, by the
publisher (:mod:`bot.slack.publisher`). So the handler, when it delivers a trigger, looks
up the stored incident message and adds its permalink to the event's ``links``; while the
message is not posted yet it defers the trigger (:class:`Defer`, not a failed attempt), for
at most ``wait`` seconds from the failure. After that the page goes out without the link:
a Slack outage never delays a page by more than ``wait``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.integrations.pagerduty import PagerDuty
from bot.slack.links import SlackLinks
from bot.slack.publisher import INCIDENT
from bot.storage.outbox import Defer

log = logging.getLogger(__name__)

THREAD_TEXT = "Incident thread in Slack"
POLL = 0.5  # seconds between looks for the incident message while a trigger waits


@dataclass
class ThreadLinkedPages:
    """Delivers pages through ``pagerduty``, triggers with the incident thread's link.

    Args:
        pagerduty: the Events API v2 sender.
        links: permalinks to the bot's stored messages.
        wait: the longest a trigger waits for the incident message, in seconds from the
            failure it reports (the payload's ``timestamp``).
    """

    pagerduty: PagerDuty
    links: SlackLinks
    wait: float = 10.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def deliver(self, payload: dict[str, Any]) -> None:
        """Send one outbox page (see :meth:`PagerDuty.deliver`).

        Raises:
            Defer: a trigger whose incident message is not posted yet, within ``wait``.
        """
        if payload.get("action") == "trigger":
            payload = self._with_thread(payload)
        self.pagerduty.deliver(payload)

    def _with_thread(self, payload: dict[str, Any]) -> dict[str, Any]:
        session_id = (payload.get("custom_details") or {}).get("session_id")
        if not isinstance(session_id, int) or payload.get("incident_thread") is False:
            return payload  # an informational page (break-glass) has no incident thread
        thread = self.links.to(session_id, INCIDENT)
        if thread is not None:
            others = [link for link in payload.get("links") or [] if link.get("href") != thread]
            return {**payload, "links": [{"href": thread, "text": THREAD_TEXT}, *others]}
        left = self.wait - self._age(payload)
        if left > 0:
            raise Defer(min(POLL, left))
        log.warning(
            "paging without the incident thread's link: no incident message for session %s "
            "after %gs",
            session_id,
            self.wait,
        )
        return payload

    def _age(self, payload: dict[str, Any]) -> float:
        """Seconds since the failure the trigger reports (0 when it does not say)."""
        try:
            since = datetime.fromisoformat(str(payload["timestamp"]))
        except (KeyError, ValueError):
            return 0.0
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return (self.clock() - since).total_seconds()
