"""Requests from Slack to the bot: slash commands and interactions, signed as Slack signs them.

``SlackRequests`` sends them to a Bolt ``/slack/events`` URL as form posts signed with the
app's signing secret (``X-Slack-Signature``, ``X-Slack-Request-Timestamp``), with the bodies
Slack sends. The sandbox's page and the tests both go through it.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from sandbox.slack_api import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID, Message

if TYPE_CHECKING:
    from sandbox.slack_api import FakeSlack


@dataclass(frozen=True)
class Response:
    """The bot's HTTP answer to one request, and the body that was sent."""

    status: int
    body: str
    headers: dict[str, str]
    request_body: str = field(default="", repr=False)

    def json(self) -> Any:
        """The response body parsed as JSON."""
        return json.loads(self.body)


class SlackRequests:
    """Sends signed slash commands and interactions to a Bolt ``/slack/events`` URL.

    Bodies and headers are those Slack sends: ``application/x-www-form-urlencoded``, signed
    ``v0=HMAC-SHA256(secret, "v0:{timestamp}:{body}")`` in ``X-Slack-Signature`` with
    ``X-Slack-Request-Timestamp``. When ``fake`` is given, default response URLs point at it
    (``command-1``, ``action-2`` ...); otherwise at a closed loopback port, never at Slack.
    """

    def __init__(
        self,
        signing_secret: str,
        url: str,
        *,
        fake: FakeSlack | None = None,
        team_id: str = TEAM_ID,
        team_domain: str = TEAM_DOMAIN,
        api_app_id: str = APP_ID,
        verification_token: str = "verification-token",
        timeout: float = 10.0,
    ) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.url = url
        self.fake = fake
        self.team_id = team_id
        self.team_domain = team_domain
        self.api_app_id = api_app_id
        self.verification_token = verification_token
        self.timeout = timeout
        self._seq = itertools.count(1)
        # Loopback must never go through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def sign(self, body: str, timestamp: int | str) -> str:
        """The ``X-Slack-Signature`` Slack would send for ``body`` at ``timestamp``."""
        signature = self.verifier.generate_signature(timestamp=str(timestamp), body=body)
        assert signature is not None
        return signature

    def signed_headers(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> dict[str, str]:
        """The headers Slack sends with ``body``: timestamp, signature, retry markers."""
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature if signature is not None else self.sign(body, ts),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return headers

    def post(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        """POST a raw ``body``, signed (or with the given forged ``signature``).

        ``retry_num`` adds ``X-Slack-Retry-Num`` and ``X-Slack-Retry-Reason: http_timeout``, as
        Slack does when it resends a request (resend ``response.request_body`` for a true retry).
        """
        headers = self.signed_headers(
            body,
            content_type=content_type,
            retry_num=retry_num,
            timestamp=timestamp,
            signature=signature,
        )
        request = urllib.request.Request(
            self.url, data=body.encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                return Response(
                    status=reply.status,
                    body=reply.read().decode("utf-8"),
                    headers=dict(reply.headers.items()),
                    request_body=body,
                )
        except urllib.error.HTTPError as error:
            with error:
                return Response(
                    status=error.code,
                    body=error.read().decode("utf-8"),
                    headers=dict(error.headers.items()),
                    request_body=body,
                )

    def command(
        self,
        text: str,
        *,
        user_id: str,
        command: str = "/deploy",
        channel_id: str = "C0DEPLOYS",
        channel_name: str | None = None,
        user_name: str | None = None,
        response_url: str | None = None,
        trigger_id: str | None = None,
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        """A slash command, as the form post Slack sends."""
        seq = next(self._seq)
        form = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name or channel_id.lower(),
            "user_id": user_id,
            "user_name": user_name or user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or self._response_url(f"command-{seq}"),
            "trigger_id": trigger_id or self._trigger_id(seq),
        }
        return self.post(
            urlencode(form), retry_num=retry_num, timestamp=timestamp, signature=signature
        )

    def block_action(
        self,
        *,
        user_id: str,
        action_id: str,
        channel_id: str,
        message_ts: str,
        value: str | None = None,
        block_id: str | None = None,
        selected_options: list[dict[str, Any]] | None = None,
        selected_option: dict[str, Any] | None = None,
        action_type: str | None = None,
        message: Message | Mapping[str, Any] | None = None,
        is_ephemeral: bool = False,
        user_name: str | None = None,
        channel_name: str | None = None,
        response_url: str | None = None,
        trigger_id: str | None = None,
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        """A click (button, select, checkboxes) in a message: ``payload=`` block_actions JSON.

        ``block_id``, ``value`` and the element type default to those of the element carrying
        ``action_id`` in ``message``'s blocks, as Slack fills them in.
        """
        seq = next(self._seq)
        message_payload = _message_payload(message, message_ts)
        element, element_block_id = _find_element(message_payload.get("blocks") or [], action_id)
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id or element_block_id or f"{action_id}-block",
            "type": action_type or _action_type(element, selected_option, selected_options),
            "action_ts": f"{time.time():.6f}",
        }
        if selected_options is not None:
            action["selected_options"] = selected_options
        elif selected_option is not None:
            action["selected_option"] = selected_option
        elif value is not None:
            action["value"] = value
        elif element is not None and "value" in element:
            action["value"] = element["value"]
        if element is not None and "text" in element:
            action["text"] = element["text"]
        url = response_url or self._response_url(f"action-{seq}")
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": is_ephemeral,
            },
            "trigger_id": trigger_id or self._trigger_id(seq),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": channel_name or channel_id.lower()},
            "state": {"values": {}},
            "response_url": url,
            "actions": [action],
        }
        if not is_ephemeral:
            payload["message"] = message_payload
        return self._send_payload(payload, retry_num, timestamp, signature)

    def view_submission(
        self,
        *,
        user_id: str,
        callback_id: str,
        private_metadata: str,
        values: Mapping[str, Mapping[str, Mapping[str, Any]]],
        view_id: str = "V1",
        view_hash: str | None = None,
        view: Mapping[str, Any] | None = None,
        user_name: str | None = None,
        trigger_id: str | None = None,
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        """A modal's submit: ``payload=`` view_submission JSON with ``state.values``.

        ``values`` maps block_id to action_id to the element's value dict, for example
        ``{"reason": {"reason_input": {"type": "plain_text_input", "value": "flaky"}}}``.
        ``view``, when given, is the view as shown (``views.open``'s answer): its blocks,
        title, submit and close buttons and hash go into the payload, as Slack sends them.
        """
        seq = next(self._seq)
        shown = dict(view or {})
        payload: dict[str, Any] = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": self._user(user_id, user_name),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": trigger_id or self._trigger_id(seq),
            "view": {
                "id": view_id,
                "team_id": self.team_id,
                "type": "modal",
                "blocks": list(shown.get("blocks") or []),
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": {k: dict(v) for k, v in values.items()}},
                "hash": view_hash or shown.get("hash") or f"{int(time.time())}.{seq:08d}",
                "title": shown.get("title") or {"type": "plain_text", "text": "deploybot"},
                "clear_on_close": False,
                "notify_on_close": False,
                "previous_view_id": None,
                "root_view_id": view_id,
                "app_id": self.api_app_id,
                "external_id": "",
                "app_installed_team_id": self.team_id,
                "bot_id": BOT_ID,
                **{k: shown[k] for k in ("submit", "close") if k in shown},
            },
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._send_payload(payload, retry_num, timestamp, signature)

    def event(self, event: Mapping[str, Any], *, retry_num: int | None = None) -> Response:
        """An Events API callback (``app_home_opened``, say), as the JSON Slack posts."""
        seq = next(self._seq)
        body = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": {"event_ts": f"{int(time.time())}.{seq:06d}", **event},
            "type": "event_callback",
            "event_id": f"Ev{seq:08d}{secrets.token_hex(4).upper()}",
            "event_time": int(time.time()),
        }
        return self.post(json.dumps(body), content_type="application/json", retry_num=retry_num)

    def app_home_opened(self, user_id: str) -> Response:
        """The person opened the bot's Home tab."""
        return self.event(
            {"type": "app_home_opened", "user": user_id, "channel": "D0HOME", "tab": "home"}
        )

    def _send_payload(
        self,
        payload: Mapping[str, Any],
        retry_num: int | None,
        timestamp: int | None,
        signature: str | None,
    ) -> Response:
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, retry_num=retry_num, timestamp=timestamp, signature=signature)

    def _user(self, user_id: str, user_name: str | None) -> dict[str, str]:
        name = user_name or user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _response_url(self, name: str) -> str:
        if self.fake is not None:
            return self.fake.response_url(name)
        return f"http://127.0.0.1:1/response/{name}"  # nothing listens: refused, stays local

    def _trigger_id(self, seq: int) -> str:
        return f"{int(time.time())}.{seq}.{secrets.token_hex(16)}"


def _message_payload(message: Message | Mapping[str, Any] | None, ts: str) -> dict[str, Any]:
    if isinstance(message, Message):
        payload = message.as_payload()
    elif message is not None:
        payload = dict(message)
    else:
        payload = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "text": ""}
    payload["ts"] = ts
    return payload


def _find_element(
    blocks: list[dict[str, Any]], action_id: str
) -> tuple[dict[str, Any] | None, str | None]:
    """The interactive element with ``action_id`` and its block's ID."""
    for block in blocks:
        candidates = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            candidates.append(block["accessory"])
        if isinstance(block.get("element"), dict):
            candidates.append(block["element"])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element, block.get("block_id")
    return None, None


def _action_type(
    element: Mapping[str, Any] | None,
    selected_option: Mapping[str, Any] | None,
    selected_options: list[dict[str, Any]] | None,
) -> str:
    if element is not None and "type" in element:
        return str(element["type"])
    if selected_options is not None:
        return "checkboxes"
    if selected_option is not None:
        return "static_select"
    return "button"
