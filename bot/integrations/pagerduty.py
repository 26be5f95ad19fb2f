"""Paging on-call through PagerDuty's Events API v2, as the outbox's ``"pagerduty"`` handler.

A page carries what on-call needs: the summary, the severity, the link to the session, and
in ``custom_details`` the probe's detail, redacted and cut to :data:`DETAIL_LIMIT` characters
(every string in ``custom_details`` is, and the summary is redacted too; again at delivery,
for rows written before).

A page is recorded in the outbox with :func:`page_payload` and delivered by
:meth:`PagerDuty.deliver` with PagerDuty's official client (``pagerduty.EventsApiV2Client``).
The payload names the environment variable holding the routing key, never the key itself:
the key is read at delivery time.

Retrying is the outbox's job, not the client's: the client's own retries (sleeping in the
worker thread, and retrying HTTP 429 without limit) are turned off, and its outcomes are
mapped onto the outbox's: 429 asks for a retry after ``Retry-After``, 5xx and network errors
are retried with backoff, any other 4xx (and a missing routing key) is a permanent failure.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx2
import pagerduty

from bot.ops.metrics import counts_pages
from bot.ops.redact import redact
from bot.storage.outbox import OUTBOX_ID, PermanentFailure, RetryAfter

log = logging.getLogger(__name__)

EVENTS_URL_ENV = "PAGERDUTY_EVENTS_URL"
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_LIMIT = 1024
DETAIL_LIMIT = 1000  # characters of each custom_details string: enough to see why, no dump
DEDUP_KEY_LIMIT = 255

Action = Literal["trigger", "acknowledge", "resolve"]
Severity = Literal["critical", "error", "warning", "info"]


def page_payload(
    *,
    action: Action,
    env_name: str,
    routing_key_env: str,
    session_id: int,
    probe: str,
    summary: str,
    severity: Severity,
    details: Mapping[str, Any],
    link: str | None,
    at: datetime | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The outbox payload of one page about one probe of one deploy session.

    The ``dedup_key`` is ``deploybot/<env>/session-<id>/<probe>``: every trigger for the same
    failing probe of a session updates one alert, and acknowledge/resolve address it. Enqueue
    with ``ordering_key=payload["dedup_key"]`` so that events for one alert keep their order.

    Args:
        action: ``trigger``, ``acknowledge`` or ``resolve``.
        env_name: the environment's name.
        routing_key_env: the environment variable that holds the routing key.
        session_id: the deploy session.
        probe: the probe's name.
        summary: what is wrong, one line; redacted and cut to 1024 characters.
        severity: ``critical``, ``error``, ``warning`` or ``info``.
        details: extra facts for the alert's ``custom_details`` (the probe's ``detail``);
            strings are redacted and cut to :data:`DETAIL_LIMIT` characters; lists and
            mappings are written as JSON strings and treated alike.
        link: a URL for the alert's links (the session in Slack), if any.
        at: when it was detected (timezone-aware); now if not given.
        source: the affected system; the environment's name if not given.

    Returns:
        ``{"action", "routing_key_env", "dedup_key", "summary", "source", "severity",
        "component", "custom_details", "links", "timestamp"}``.

    Raises:
        ValueError: unknown action or severity, naive ``at``, or a dedup key over 255 chars.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown PagerDuty action {action!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown PagerDuty severity {severity!r}")
    when = at or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: pages carry aware timestamps only")
    dedup_key = f"deploybot/{env_name}/session-{session_id}/{probe}"
    if len(dedup_key) > DEDUP_KEY_LIMIT:
        raise ValueError(f"dedup key longer than {DEDUP_KEY_LIMIT} characters: {dedup_key!r}")
    return {
        "action": action,
        "routing_key_env": routing_key_env,
        "dedup_key": dedup_key,
        "summary": truncate_summary(redact(summary)),
        "source": source or env_name,
        "severity": severity,
        "component": probe,
        "custom_details": {
            **fit_details(details),
            "environment": env_name,
            "session_id": session_id,
            "probe": probe,
        },
        "links": [{"href": link, "text": f"Deploy session #{session_id}"}] if link else [],
        "timestamp": when.astimezone(UTC).isoformat(),
    }


def change_payload(
    *,
    env_name: str,
    routing_key_env: str,
    session_id: int,
    summary: str,
    details: Mapping[str, Any],
    link: str | None,
    at: datetime,
) -> dict[str, Any]:
    """The outbox payload of a change event (a deploy started, finished, rolled back), for
    the service's timeline: no alert, so no dedup key and no severity.

    Raises:
        ValueError: a naive ``at``.
    """
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: change events carry aware timestamps only")
    return {
        "action": "change",
        "routing_key_env": routing_key_env,
        "summary": truncate_summary(redact(summary)),
        "source": f"deploybot/{env_name}",
        "custom_details": {
            **fit_details(details),
            "environment": env_name,
            "session_id": session_id,
        },
        "links": [{"href": link, "text": f"Deploy session #{session_id}"}] if link else [],
        "timestamp": at.astimezone(UTC).isoformat(),
    }


def truncate_summary(summary: str) -> str:
    """``summary`` cut to PagerDuty's 1024 characters, ending in "…" when cut."""
    if len(summary) <= SUMMARY_LIMIT:
        return summary
    return summary[: SUMMARY_LIMIT - 1] + "…"


def fit_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` fit to leave for PagerDuty: strings redacted and cut to DETAIL_LIMIT."""
    fitted: dict[str, Any] = {}
    for key, value in details.items():
        if value is None or isinstance(value, bool | int | float):
            fitted[str(key)] = value
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        text = redact(text)
        fitted[str(key)] = text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"
    return fitted


class _RateLimited(Exception):
    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        super().__init__(f"rate limited (HTTP {response.status_code})")


class _EventsClient(pagerduty.EventsApiV2Client):
    """The official client with its in-process retries off: the outbox retries instead.

    ``max_network_attempts = 0`` makes a network error raise ``pagerduty.Error`` at once;
    an empty ``retry`` table returns 5xx responses (``successful_response`` then raises
    ``pagerduty.ServerHttpError``); and 429, which the client would retry without limit,
    is raised from ``postprocess``, the client's hook run on every response.
    """

    def __init__(self, routing_key: str, *, base_url: str | None, **kw: Any) -> None:
        super().__init__(routing_key, base_url=base_url, **kw)
        self.retry = {}
        self.max_network_attempts = 0

    def postprocess(self, response: httpx2.Response) -> None:
        if response.status_code == 429:
            raise _RateLimited(response)


class PagerDuty:
    """Sends outbox pages to PagerDuty's Events API v2.

    Args:
        events_url: the Events API base URL (``https://events.pagerduty.com``, or
            ``https://events.eu.pagerduty.com``); defaults to ``$PAGERDUTY_EVENTS_URL``, else
            the client's default. A URL ending in ``/v2/enqueue`` is taken as its base.
        verify: TLS verification for the client: True (system CAs), or an
            ``ssl.SSLContext`` (tests: one trusting their CA).
        timeout: seconds per request; keep it below the outbox worker's lease. A request
            hanging in an outage holds the pages' worker this long.
        rate_limit_delay: seconds to wait after a 429 without ``Retry-After`` (as long as
            the pages' backoff cap, so a rate limit ending is noticed as soon).
        environ: where routing keys are looked up at delivery time; ``os.environ`` by default.

    Raises:
        ValueError: ``events_url`` is not an https URL (the client accepts no other).
    """

    def __init__(
        self,
        *,
        events_url: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 5.0,
        rate_limit_delay: float = 5.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        url = events_url or os.environ.get(EVENTS_URL_ENV) or None
        if url is not None:
            url = url.rstrip("/").removesuffix("/v2/enqueue")
            if not url.startswith("https://"):
                raise ValueError(f"the PagerDuty events URL must be https://, not {url!r}")
        self.events_url = url
        self._verify = verify
        self._timeout = timeout
        self._rate_limit_delay = rate_limit_delay
        self._environ = environ

    @counts_pages
    def deliver(self, payload: dict[str, Any]) -> None:
        """Send one outbox payload (see :func:`page_payload`) as an Events API v2 event.

        Args:
            payload: the row's payload; ``outbox_id`` (added by the worker) goes to the
                alert's ``custom_details`` as ``outbox_id``.

        Raises:
            PermanentFailure: the routing-key variable is not set, the payload is malformed,
                or PagerDuty refused the event (4xx other than 429).
            RetryAfter: PagerDuty answered 429.
            pagerduty.Error: a 5xx answer or a network error (retried with backoff).
        """
        action = payload.get("action")
        if action not in (*ACTIONS, "change"):
            raise PermanentFailure(f"unknown PagerDuty action {action!r}")
        dedup_key = payload.get("dedup_key")
        if action == "change":
            dedup_key = (
                f"change event of session {payload.get('custom_details', {}).get('session_id')}"
            )
        elif not isinstance(dedup_key, str) or not dedup_key:
            raise PermanentFailure("a PagerDuty page needs a dedup_key")
        routing_key = self._routing_key(payload.get("routing_key_env"))
        try:
            with _EventsClient(
                routing_key, base_url=self.events_url, verify=self._verify
            ) as client:
                client.timeout = self._timeout  # type: ignore[assignment]  # int there; float works
                if action == "change":
                    client.send_change_event(
                        payload={
                            "summary": truncate_summary(redact(str(payload.get("summary", "")))),
                            "source": str(payload.get("source", "deploybot")),
                            "timestamp": payload.get("timestamp") or datetime.now(UTC).isoformat(),
                            "custom_details": fit_details(payload.get("custom_details") or {}),
                        },
                        links=list(payload.get("links") or []),
                    )
                elif action == "trigger":
                    self._trigger(client, dedup_key, payload)
                else:
                    client.send_event(action, dedup_key=dedup_key)
        except _RateLimited as limited:
            raise RetryAfter(
                self._retry_after(limited.response),
                f"PagerDuty rate limit (HTTP 429) for {dedup_key}",
            ) from limited
        except pagerduty.HttpError as error:
            response = error.response
            if response is not None and response.status_code // 100 == 4:
                raise PermanentFailure(
                    f"PagerDuty refused the {action} for {dedup_key} "
                    f"(HTTP {response.status_code}): {_errors(response)}"
                ) from error
            raise
        except pagerduty.UrlError as error:
            raise PermanentFailure(f"PagerDuty events URL: {error}") from error

    def _trigger(self, client: _EventsClient, dedup_key: str, payload: dict[str, Any]) -> None:
        details = fit_details(payload.get("custom_details") or {})
        if OUTBOX_ID in payload:
            details[OUTBOX_ID] = payload[OUTBOX_ID]
        extra: dict[str, Any] = {
            # Always explicit: the client's own default timestamp path is broken in 7.2.0.
            "timestamp": payload.get("timestamp") or datetime.now(UTC).isoformat(),
        }
        if payload.get("component"):
            extra["component"] = payload["component"]
        try:
            client.trigger(
                summary=truncate_summary(redact(str(payload["summary"]))),
                source=str(payload["source"]),
                dedup_key=dedup_key,
                severity=str(payload["severity"]),
                payload=extra,
                custom_details=details,
                links=list(payload.get("links") or []),
            )
        except KeyError as missing:
            raise PermanentFailure(f"a PagerDuty trigger needs {missing}") from None

    def _routing_key(self, variable: Any) -> str:
        if not isinstance(variable, str) or not variable:
            raise PermanentFailure("the page names no routing_key_env variable")
        environ = os.environ if self._environ is None else self._environ
        value = environ.get(variable, "").strip()
        if not value:
            raise PermanentFailure(f"{variable} is not set")
        return value

    def _retry_after(self, response: httpx2.Response) -> float:
        header = response.headers.get("Retry-After", "").strip()
        if header:
            try:
                return max(0.0, float(header))
            except ValueError:
                pass
            try:
                when = parsedate_to_datetime(header)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
            except (TypeError, ValueError):
                log.warning("PagerDuty sent an unreadable Retry-After: %r", header)
        return self._rate_limit_delay


def _errors(response: httpx2.Response) -> str:
    """PagerDuty's ``errors`` list from a 4xx body, else the body itself (shortened)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and body.get("errors"):
        return "; ".join(str(e) for e in body["errors"])[:500]
    return response.text[:500]
