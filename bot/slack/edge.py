"""The HTTP edge in front of Bolt: every request is answered 200, 400 or 401, never 500.

Bolt's HTTP adapter decodes the body as UTF-8, parses it and builds its context before it
checks the signature, and slack_sdk's verifier calls ``int()`` on the timestamp header:
a non-integer timestamp, a body that is not UTF-8 or a ``payload`` that is not a JSON object
raised there, and the server answered 500. :class:`SlackEdge` takes the raw request first:

1. a timestamp that is not a whole number of seconds is refused (401), as a bad signature is;
2. a body that is not UTF-8 is refused (400);
3. the signature is checked with slack_sdk's verifier (401);
4. the body is parsed and its shape checked (:mod:`bot.slack.payloads`); a malformed one is
   refused (400), and a slash command that cannot be stored gets an ephemeral answer saying
   why (200);
5. then Bolt handles it as before (and checks the signature again, as it always does).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App, BoltResponse
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.context import BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import (
    build_context,
    build_normalized_headers,
    extract_content_type,
)
from slack_sdk.signature import SignatureVerifier

from bot.slack.payloads import problem, unstorable

TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() also takes "١٢" and "1_2"

Headers = Mapping[str, str | Sequence[str]]


class SlackEdge:
    """Answers one raw Slack request through ``app``; see the module's description."""

    def __init__(self, app: App, signing_secret: str) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret)

    def answer(self, raw: bytes, headers: Headers, query: str = "") -> BoltResponse:
        """The response to ``raw`` (the body as received) with its ``headers``."""
        normalized = build_normalized_headers(dict(headers))
        timestamp = _first(normalized, "x-slack-request-timestamp")
        # Without a secret (Socket Mode serving only health checks) nothing can be verified.
        if not self.verifier.signing_secret or not TIMESTAMP.fullmatch(timestamp):
            return BoltResponse(status=401, body={"error": "invalid request"})
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _refused("The request body is not UTF-8.")
        if not self.verifier.is_valid(text, timestamp, _first(normalized, "x-slack-signature")):
            return BoltResponse(status=401, body={"error": "invalid request"})
        try:
            body, interactive = parse(text, extract_content_type(normalized))
        except (ValueError, RecursionError):
            return _refused("The request body is not a form or JSON that Slack sends.")
        refusal = check(body, interactive=interactive)
        if refusal is not None:
            return refusal
        request = BoltRequest(body=text, query=query, headers=dict(headers))
        if request.body != body:
            # Bolt takes any form body with "payload" in it (a slash command's text, say) for
            # an interaction, finds no payload field and sees an empty body: use the real one.
            request.body = body
            request.context = build_context(BoltContext(), body)
        return self.app.dispatch(request)


def check(body: Any, *, interactive: bool) -> BoltResponse | None:
    """The answer to a parsed request deploybot does not take (over HTTP or Socket Mode),
    or None when Bolt may have it."""
    if not isinstance(body, dict):
        return _refused("The request's payload is not a JSON object.")
    wrong = problem(body, interactive=interactive)
    if wrong is not None:
        return _refused(f"The request is not one deploybot takes ({wrong}).")
    bad = unstorable(body)
    if bad is not None:
        if "command" in body and not interactive:
            return BoltResponse(
                status=200,
                body={
                    "response_type": "ephemeral",
                    "text": f":warning: The command contains {bad}: retype it without.",
                },
            )
        return _refused(f"The request contains {bad}.")
    return None


def parse(text: str, content_type: str | None) -> tuple[Any, bool]:
    """The request's data and whether it came as an interaction's ``payload=`` field;
    JSON or form as Bolt tells them apart.

    Raises:
        ValueError: invalid JSON (``NaN`` and ``Infinity`` too).
    """
    if not text:
        return {}, False
    if content_type == "application/json" or text.startswith("{"):
        return _json(text), False
    form = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in form:
        return _json(form["payload"]), True
    return form, False


def _json(text: str) -> Any:
    """JSON as its standard has it: Python's ``NaN`` and ``Infinity`` are refused (the
    inbox's jsonb column refuses them on PostgreSQL)."""
    return json.loads(text, parse_constant=_not_json)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


class EdgeHandler(SlackRequestHandler):
    """Bolt's WSGI adapter with :class:`SlackEdge` in front of the app."""

    def __init__(self, app: App, signing_secret: str, path: str = "/slack/events") -> None:
        super().__init__(app, path)
        self.edge = SlackEdge(app, signing_secret)

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        environ = request.environ
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refused("The Content-Length header is not a number.")
        raw = environ["wsgi.input"].read(length) if "wsgi.input" in environ else b""
        return self.edge.answer(raw, request.get_headers(), request.query_string)


def _first(headers: dict[str, Sequence[str]], name: str) -> str:
    values = headers.get(name) or [""]
    return str(values[0])


def _refused(why: str) -> BoltResponse:
    return BoltResponse(status=400, body=why, headers={"content-type": "text/plain;charset=utf-8"})
