"""PagerDuty's change events (``POST /v2/change/enqueue``) for the fake PagerDuty.

Validated as PagerDuty documents them ("Send Change Events"; the Events v2 OpenAPI
document): a 32-character ``routing_key``; a ``payload`` with ``summary`` (required, at
most 1024 characters), optional ``timestamp`` (ISO 8601 with a time zone), ``source`` (a
string) and ``custom_details`` (an object); optional ``links`` (objects with ``href``,
optional ``text``) and ``images``. Nothing else: change events have no ``event_action``,
``dedup_key`` or ``severity``, and unknown fields are refused. Valid ones are answered
``202 {"status": "success", "message": "Change event processed"}`` and recorded apart from
alert events (:meth:`ChangeEvents.change_events`).
"""

from __future__ import annotations

import threading
from typing import Any

CHANGE_PATH = "/v2/change/enqueue"
ROUTING_KEY_LENGTH = 32
SUMMARY_LIMIT = 1024
_FIELDS = {"routing_key", "payload", "links", "images"}
_PAYLOAD_FIELDS = {"summary", "timestamp", "source", "custom_details"}


def validate_change_event(event: dict[str, Any]) -> list[str]:
    """The problems PagerDuty would report for a change event; empty when it is valid."""
    from sandbox.pagerduty import _list_errors, _timestamp_errors

    errors = [f"Unknown field '{name}'" for name in sorted(set(event) - _FIELDS)]
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != ROUTING_KEY_LENGTH:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*errors, "'payload' is missing or not an object"]
    errors += [f"Unknown field 'payload.{n}'" for n in sorted(set(payload) - _PAYLOAD_FIELDS)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > SUMMARY_LIMIT:
        errors.append(f"'payload.summary' is longer than {SUMMARY_LIMIT} characters")
    if "timestamp" in payload:
        errors += _timestamp_errors(payload["timestamp"])
    if "source" in payload and not isinstance(payload["source"], str):
        errors.append("'payload.source' must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'payload.custom_details' must be an object")
    errors += _list_errors(event, "links", required="href", optional=("text",))
    errors += _list_errors(event, "images", required="src", optional=("href", "alt"))
    return errors


class ChangeEvents:
    """The fake's change-event side: what it accepted, and how it answers."""

    _lock: threading.Lock
    _change_events: list[dict[str, Any]]

    def change_events(self) -> list[dict[str, Any]]:
        """Accepted change events, oldest first, as sent."""
        with self._lock:
            return list(self._change_events)

    def _answer_change(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        errors = validate_change_event(body)
        if errors:
            return 400, {}, {"status": "invalid event", "message": "Event object is invalid",
                             "errors": errors}  # fmt: skip
        self._change_events.append(body)
        return 202, {}, {"status": "success", "message": "Change event processed"}
