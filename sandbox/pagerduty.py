"""PagerDuty's Events API v2 on loopback, over HTTPS, checking every event against its schema.

``FakePagerDuty`` serves ``POST /v2/enqueue`` (where ``pagerduty.EventsApiV2Client`` posts,
relative to its base URL), and ``POST /v2/change/enqueue`` (change events:
:mod:`sandbox.pagerduty_change`) on ``https://127.0.0.1:<port 0>`` with a certificate issued by a
``trustme`` CA made for the test; give the client ``verify=fake.client_ssl_context()``.

It validates events as PagerDuty documents them ("Send an Alert Event"; the Events v2 OpenAPI
document): a 32-character ``routing_key``; ``event_action`` one of trigger / acknowledge /
resolve; ``dedup_key`` (at most 255 characters) required unless triggering; for a trigger a
``payload`` with ``summary`` (at most 1024 characters), ``source`` and ``severity`` (critical /
error / warning / info), optional ``timestamp`` (ISO 8601), ``component``, ``group``, ``class``,
``custom_details`` (an object); optional ``client``, ``client_url``, ``links`` (objects with
``href``, optional ``text``) and ``images`` (objects with ``src``, optional ``href``, ``alt``).
Unknown fields are refused too, so that a typo in the bot cannot pass unnoticed.

Valid events get ``202 {"status": "success", "message": "Event processed", "dedup_key": ...}``;
invalid ones ``400 {"status": "invalid event", "message": "Event object is invalid",
"errors": [...]}``. Accepted events are recorded, and alerts are kept by ``dedup_key`` with
PagerDuty's semantics: a trigger for an open alert updates it, acknowledge and resolve move
it, a trigger after a resolve opens a new alert, acknowledge/resolve of no open alert is
accepted and changes nothing.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import IPPROTO_TCP, TCP_NODELAY, socket
from typing import Any, Literal

import trustme

from sandbox.pagerduty_change import CHANGE_PATH, ChangeEvents
from sandbox.serving import ServedInBackground

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY_LENGTH = 32
SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255

_EVENT_FIELDS = {
    "routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links",
    "images",
}  # fmt: skip
_PAYLOAD_FIELDS = {
    "summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details",
}  # fmt: skip

AlertStatus = Literal["triggered", "acknowledged", "resolved"]


@dataclass(frozen=True)
class Request:
    """One HTTP request the fake received, and what it answered."""

    path: str
    status: int
    body: Any
    headers: dict[str, str]
    at: float


@dataclass
class Alert:
    """An alert as PagerDuty keeps it: the latest trigger's fields and the events it merged.

    Attributes:
        dedup_key: the key events address it by.
        status: ``triggered``, ``acknowledged`` or ``resolved``.
        payload: the ``payload`` of the latest trigger.
        links: the ``links`` of the latest trigger.
        events: every accepted event for this alert, oldest first.
    """

    dedup_key: str
    status: AlertStatus
    payload: dict[str, Any]
    links: list[dict[str, Any]]
    events: list[dict[str, Any]] = field(default_factory=list)


_HUNG: tuple[int, dict[str, str], dict[str, Any] | None] = (
    503,
    {},
    {"status": "error", "message": "timed out"},
)


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: str | None = None


class FakePagerDuty(ChangeEvents, ServedInBackground):
    """An HTTPS server on ``127.0.0.1:0`` that answers like PagerDuty's Events API v2.

    Starts when constructed; use it as a context manager (or call ``close()``).

    Args:
        on_change: Called after each request was answered (the sandbox's page then updates).
    """

    def __init__(self, *, on_change: Callable[[], None] | None = None) -> None:
        self.on_change = on_change
        self.ca = trustme.CA()
        self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._server_context)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[Request] = []
        self._events: list[dict[str, Any]] = []
        self._change_events: list[dict[str, Any]] = []  # POST /v2/change/enqueue
        self._alerts: dict[str, list[Alert]] = {}
        self._faults: deque[_Fault] = deque()
        self._outage: _Fault | None = None
        self._recovered = threading.Event()
        self._recovered.set()
        self._start_serving(_Server(self), "fake-pagerduty")

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The events base URL (``https://127.0.0.1:<port>``) for the client's ``base_url``."""
        host, port = self._server.server_address[:2]
        return f"https://{host!s}:{port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and nothing else)."""
        # With cadata, the system's default CAs are not loaded.
        return ssl.create_default_context(cadata=self.ca.cert_pem.bytes().decode("ascii"))

    # -- fault injection ---------------------------------------------------------------------

    def fail(self, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and an error body."""
        with self._lock:
            self._faults.extend([_Fault(status)] * times)

    def rate_limit(self, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests with 429, with ``Retry-After`` if given."""
        header = None if retry_after is None else f"{retry_after:g}"
        with self._lock:
            self._faults.extend([_Fault(429, header)] * times)

    def outage(self, status: int | None = 503, *, retry_after: float | None = None) -> None:
        """Fail every request until :meth:`recover`: answer ``status`` (429 with
        ``Retry-After`` if given), or with None hold each request unanswered (the client
        times out) and answer it 503 once recovered, never accepting it."""
        header = None if retry_after is None else f"{retry_after:g}"
        with self._lock:
            self._outage = _Fault(status or 0, header)
            if status is None:
                self._recovered.clear()

    def recover(self) -> None:
        """End the :meth:`outage`: requests are answered as usual again."""
        with self._lock:
            self._outage = None
            self._recovered.set()

    # -- what happened -----------------------------------------------------------------------

    def requests(self) -> list[Request]:
        """Every request received, oldest first, whatever was answered."""
        with self._lock:
            return list(self._requests)

    def events(self) -> list[dict[str, Any]]:
        """Accepted events (answered 202), oldest first, as sent."""
        with self._lock:
            return list(self._events)

    def alerts(self) -> dict[str, Alert]:
        """The latest alert of each dedup key."""
        with self._lock:
            return {key: alerts[-1] for key, alerts in self._alerts.items()}

    def alert(self, dedup_key: str) -> Alert:
        """The latest alert for ``dedup_key``; AssertionError if there is none."""
        alerts = self.alerts()
        if dedup_key not in alerts:
            raise AssertionError(f"no alert {dedup_key!r}; alerts: {sorted(alerts)}")
        return alerts[dedup_key]

    def alert_count(self, dedup_key: str) -> int:
        """How many alerts ``dedup_key`` opened (a trigger after a resolve opens another)."""
        with self._lock:
            return len(self._alerts.get(dedup_key, []))

    def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` events were accepted; returns them all.

        Raises:
            AssertionError: after ``timeout`` seconds, with what did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self._events)} of {count} events after {timeout} s; "
                        f"requests: {[(r.path, r.status) for r in self._requests]}"
                    )
                self._changed.wait(left)
            return list(self._events)

    # -- serving -----------------------------------------------------------------------------

    def _serve(
        self, method: str, path: str, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        hung = not self._recovered.is_set()
        if hung:  # an outage that holds requests: answered (refused) only once it ends
            self._recovered.wait()
        with self._changed:
            if hung:
                status, reply_headers, reply = _HUNG
            else:
                status, reply_headers, reply = self._answer(method, path, body, headers)
            self._requests.append(Request(path, status, body, headers, time.monotonic()))
            self._changed.notify_all()
        if self.on_change is not None:
            self.on_change()
        return status, reply_headers, reply

    def _answer(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        if method != "POST" or path not in ("/v2/enqueue", CHANGE_PATH):
            return 404, {}, {"status": "not found", "message": f"no {method} {path}"}
        if self._faults or self._outage is not None:
            fault = self._faults.popleft() if self._faults else self._outage
            assert fault is not None
            if fault.status == 429:
                return 429, {"Retry-After": fault.retry_after} if fault.retry_after else {}, None
            return fault.status, {}, {"status": "error", "message": "Internal Server Error"}
        if "application/json" not in headers.get("content-type", ""):
            return 400, {}, _invalid(["Content-Type must be application/json"])
        if not isinstance(body, dict):
            return (
                400,
                {},
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
            )
        if path == CHANGE_PATH:
            return self._answer_change(body)
        errors = validate_event(body)
        if errors:
            return 400, {}, _invalid(errors)
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        self._events.append(body)
        self._apply(dedup_key, body)
        return 202, {}, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}

    def _apply(self, dedup_key: str, event: dict[str, Any]) -> None:
        alerts = self._alerts.setdefault(dedup_key, [])
        current = alerts[-1] if alerts and alerts[-1].status != "resolved" else None
        action = event["event_action"]
        if action == "trigger":
            if current is None:
                current = Alert(dedup_key, "triggered", {}, [])
                alerts.append(current)
            current.payload = event["payload"]
            current.links = event.get("links", [])
        elif current is not None:
            current.status = "acknowledged" if action == "acknowledge" else "resolved"
        if current is not None:
            current.events.append(event)
        if not alerts:
            del self._alerts[dedup_key]


def validate_event(event: dict[str, Any]) -> list[str]:
    """The problems PagerDuty would report for ``event``; empty when it is valid."""
    errors = [f"Unknown field '{name}'" for name in sorted(set(event) - _EVENT_FIELDS)]
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or len(routing_key) != ROUTING_KEY_LENGTH:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup_key = event.get("dedup_key")
    if dedup_key is None:
        if action in ("acknowledge", "resolve"):
            errors.append(f"'dedup_key' is required for {action} events")
    elif not isinstance(dedup_key, str) or not dedup_key:
        errors.append("'dedup_key' must be a non-empty string")
    elif len(dedup_key) > DEDUP_KEY_LIMIT:
        errors.append(f"'dedup_key' is longer than {DEDUP_KEY_LIMIT} characters")
    if action == "trigger" or "payload" in event:
        errors.extend(_payload_errors(event.get("payload")))
    errors.extend(_list_errors(event, "links", required="href", optional=("text",)))
    errors.extend(_list_errors(event, "images", required="src", optional=("href", "alt")))
    for name in ("client", "client_url"):
        if name in event and not isinstance(event[name], str):
            errors.append(f"'{name}' must be a string")
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = [f"Unknown field 'payload.{n}'" for n in sorted(set(payload) - _PAYLOAD_FIELDS)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > SUMMARY_LIMIT:
        errors.append(f"'payload.summary' is longer than {SUMMARY_LIMIT} characters")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append(
            "'payload.severity' is invalid (must be one of critical, error, warning, info)"
        )
    if "timestamp" in payload:
        errors.extend(_timestamp_errors(payload["timestamp"]))
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"'payload.{name}' must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'payload.custom_details' must be an object")
    return errors


def _timestamp_errors(value: Any) -> list[str]:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return [f"'payload.timestamp' is not an ISO 8601 date-time with a time zone: {value!r}"]
    return []


def _list_errors(
    event: dict[str, Any], name: str, *, required: str, optional: tuple[str, ...]
) -> list[str]:
    if name not in event:
        return []
    items = event[name]
    if not isinstance(items, list):
        return [f"'{name}' must be an array"]
    errors = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get(required), str):
            errors.append(f"'{name}[{n}].{required}' is missing")
            continue
        extra = set(item) - {required, *optional}
        errors.extend(f"Unknown field '{name}[{n}].{x}'" for x in sorted(extra))
        errors.extend(
            f"'{name}[{n}].{x}' must be a string"
            for x in optional
            if x in item and not isinstance(item[x], str)
        )
    return errors


def _invalid(errors: list[str]) -> dict[str, Any]:
    return {"status": "invalid event", "message": "Event object is invalid", "errors": errors}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakePagerDuty) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket, Any]:
        connection, address = self.socket.accept()
        # The TLS handshake happens in the request's thread (see _Handler.setup), so a slow
        # client cannot hold up accepting others.
        wrapped = self.fake._server_context.wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(10)
        # Headers and body leave in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every answer.
        self.request.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's record is ``FakePagerDuty.requests()``, not stderr."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply_headers, reply = self.server.fake._serve(
            self.command, self.path, raw, headers
        )
        body = b"" if reply is None else json.dumps(reply).encode("utf-8")
        self.send_response(status)
        for name, value in reply_headers.items():
            self.send_header(name, value)
        if reply is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
