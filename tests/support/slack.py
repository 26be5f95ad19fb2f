"""Slack on loopback: a fake Web API, signed requests to Bolt, and a WSGI server helper.

- ``FakeSlack`` stands in for ``https://slack.com/api/``: point ``WebClient(base_url=...)`` at
  ``fake.base_url``. It records every call, answers like Slack (``ok``/``error`` bodies, HTTP 429
  with ``Retry-After``), and keeps what a user would see in each channel.
- ``SlackRequests`` sends slash commands and interactions to the bot's ``/slack/events`` URL as
  Slack does: form posts signed with the app's signing secret.
- ``serve_wsgi`` serves a WSGI app (the bot) on an OS-chosen port in a thread.

Everything binds ``127.0.0.1`` port 0, so tests run in parallel (``pytest -n``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_sdk.signature import SignatureVerifier

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

TEAM_ID = "T0TEST"
TEAM_DOMAIN = "test"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0DEPLOYBOT"
DEFAULT_TOKEN = "xoxb-test"

# Form fields whose value Slack (and slack_sdk) sends as a JSON document inside the form.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata")
_ID = re.compile(r"^[CGDUW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class Call:
    """One request the fake received.

    Attributes:
        method: Web API method (``"chat.postMessage"``), or ``"response_url"``.
        params: query, form or JSON parameters; JSON-in-form fields (``blocks``, ``view``)
            decoded to Python objects.
        headers: request headers, names lower-cased.
        at: ``time.monotonic()`` when the call arrived.
        path: the request path (``/api/chat.postMessage``, ``/response/<name>``).
    """

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    path: str = ""


@dataclass
class Message:
    """A message as stored in a channel (a snapshot when returned to a test)."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    user: str = BOT_USER_ID
    reply_broadcast: bool = False
    edits: int = 0
    edited_ts: str | None = None

    def as_payload(self) -> dict[str, Any]:
        """The message as Slack includes it in an interaction payload."""
        payload: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": self.ts,
            "text": self.text,
            "blocks": self.blocks,
        }
        if self.thread_ts:
            payload["thread_ts"] = self.thread_ts
        if self.edited_ts:
            payload["edited"] = {"user": self.user, "ts": self.edited_ts}
        return payload


@dataclass(frozen=True)
class Ephemeral:
    """An ephemeral message, seen only by ``user``."""

    channel: str
    user: str
    message_ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None


@dataclass(frozen=True)
class _Fault:
    kind: Literal["ratelimited", "error"]
    error: str
    retry_after: int = 0


_Reply = tuple[int, dict[str, str], bytes]
_Handler = Callable[[dict[str, Any]], dict[str, Any]]


class FakeSlack:
    """A threaded HTTP server on ``127.0.0.1:0`` that answers like Slack's Web API.

    Starts when constructed; use it as a context manager (or call ``close()``). Configure
    ``token``, ``channels`` (ID to name), ``users`` (ID to ``users.info`` fields),
    ``usergroups`` (ID to member IDs) and ``usergroup_handles`` (ID to handle) at any time.
    """

    def __init__(self, *, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.channels: dict[str, str] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.usergroup_handles: dict[str, str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._messages: dict[str, list[Message]] = defaultdict(list)
        self._ephemerals: list[Ephemeral] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._ts = itertools.count(1_700_000_000_000_100, 100)  # microseconds
        self._view_ids = itertools.count(1)
        self._methods: dict[str, _Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "users.info": self._users_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
        }
        self._server = _FakeSlackServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-slack",
            daemon=True,
        )
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """The Web API base URL for ``WebClient(base_url=...)``; ends with ``/``."""
        return f"{self.url}/api/"

    def response_url(self, name: str) -> str:
        """A response URL on this server; POSTs to it are recorded as ``"response_url"`` calls."""
        return f"{self.url}/response/{quote(name, safe='')}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- fault injection ---------------------------------------------------------------------

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 and ``Retry-After``."""
        with self._lock:
            self._faults[method].extend([_Fault("ratelimited", "ratelimited", retry_after)] * times)

    def fail(self, method: str, *, error: str = "channel_not_found", times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``.

        For ``"response_url"`` the failure is an HTTP 404 whose body is ``error``.
        """
        with self._lock:
            self._faults[method].extend([_Fault("error", error)] * times)

    # -- what happened -----------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Calls received so far, oldest first; only those of ``method`` if given."""
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def last(self, method: str) -> Call:
        """The latest call of ``method``; AssertionError if there was none."""
        calls = self.calls(method)
        if not calls:
            raise AssertionError(f"no {method} call; calls seen: {self._summary()}")
        return calls[-1]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``count`` calls of ``method`` arrived; returns all calls of ``method``.

        Raises:
            AssertionError: after ``timeout`` seconds, naming every call that did arrive.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                calls = [c for c in self._calls if c.method == method]
                if len(calls) >= count:
                    return calls
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"waited {timeout}s for {count} {method} call(s), got {len(calls)}; "
                        f"calls seen: {self._summary_locked()}"
                    )
                self._changed.wait(remaining)

    def messages(self, channel: str) -> list[Message]:
        """The channel as a user sees it: top-level messages (and broadcast replies), in order."""
        with self._lock:
            stored = self._messages.get(self._channel_id(channel, register=False), [])
            return [
                dataclasses.replace(m)
                for m in stored
                if m.thread_ts in (None, m.ts) or m.reply_broadcast
            ]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The thread under the message ``ts``: the parent first, then its replies in order."""
        with self._lock:
            stored = self._messages.get(self._channel_id(channel, register=False), [])
            return [dataclasses.replace(m) for m in stored if ts in (m.ts, m.thread_ts)]

    def ephemerals(self, user: str | None = None) -> list[Ephemeral]:
        """Ephemeral messages sent so far; only those shown to ``user`` if given."""
        with self._lock:
            return [e for e in self._ephemerals if user is None or e.user == user]

    def views(self) -> dict[str, dict[str, Any]]:
        """Open views by view ID, as last opened, pushed or updated."""
        with self._lock:
            return {k: dict(v) for k, v in self._views.items()}

    def reset(self) -> None:
        """Forget calls, messages, ephemerals, views and pending faults; keep configuration."""
        with self._lock:
            self._calls.clear()
            self._messages.clear()
            self._ephemerals.clear()
            self._views.clear()
            self._faults.clear()

    # -- request handling (server threads) ---------------------------------------------------

    def _serve(self, path: str, query: str, raw: bytes, headers: dict[str, str]) -> _Reply:
        if path.startswith("/api/"):
            return self._api(path, query, raw, headers)
        if path.startswith("/response/"):
            return self._response_url(path, raw, headers)
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def _api(self, path: str, query: str, raw: bytes, headers: dict[str, str]) -> _Reply:
        method = path.removeprefix("/api/")
        try:
            params = _parse_params(query, raw, headers.get("content-type", ""))
            reply: dict[str, Any] | None = None
        except ValueError:
            params, reply = {}, _error("invalid_json")
        with self._changed:
            self._calls.append(Call(method, params, headers, time.monotonic(), path))
            fault = self._take_fault(method)
            if fault is not None and fault.kind == "ratelimited":
                self._changed.notify_all()
                return (
                    429,
                    {"Content-Type": "application/json", "Retry-After": str(fault.retry_after)},
                    _json(_error("ratelimited")),
                )
            if reply is None:
                reply = self._answer(method, params, headers, fault)
            self._changed.notify_all()
        return 200, {"Content-Type": "application/json; charset=utf-8"}, _json(reply)

    def _response_url(self, path: str, raw: bytes, headers: dict[str, str]) -> _Reply:
        try:
            params = json.loads(raw) if raw else {}
        except ValueError:
            params = {"text": raw.decode("utf-8", "replace")}
        with self._changed:
            self._calls.append(Call("response_url", params, headers, time.monotonic(), path))
            fault = self._take_fault("response_url")
            self._changed.notify_all()
        if fault is None:
            return 200, {"Content-Type": "text/plain"}, b"ok"
        if fault.kind == "ratelimited":
            return 429, {"Retry-After": str(fault.retry_after)}, b"ratelimited"
        return 404, {"Content-Type": "text/plain"}, fault.error.encode()

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        return queue.popleft() if queue else None

    def _answer(
        self, method: str, params: dict[str, Any], headers: dict[str, str], fault: _Fault | None
    ) -> dict[str, Any]:
        if fault is not None:
            return _error(fault.error)
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        token = token or str(params.get("token") or "")
        if not token:
            return _error("not_authed")
        if token != self.token:
            return _error("invalid_auth")
        handler = self._methods.get(method)
        if handler is None:
            return _error("unknown_method")
        return handler(params)

    def _summary(self) -> str:
        with self._lock:
            return self._summary_locked()

    def _summary_locked(self) -> str:
        if not self._calls:
            return "none"
        return "; ".join(f"{c.method} {_brief(c.params)}" for c in self._calls)

    # -- channels and timestamps (called with the lock held) ---------------------------------

    def _channel_id(self, channel: str, *, register: bool = True) -> str:
        """A channel ID for an ID, a ``#name`` or a name; a user ID maps to a DM channel.

        A new name gets a stable ID (``"C"`` + hex of the name), recorded in ``channels``
        when ``register`` (reading a channel that nobody posted to records nothing).
        """
        if _ID.match(channel):
            if channel[0] in "UW":
                return "D" + _stable_hex(channel)
            return channel
        name = channel.removeprefix("#")
        for cid, known in self.channels.items():
            if known == name:
                return cid
        cid = "C" + _stable_hex(name)
        if register:
            self.channels[cid] = name
        return cid

    def _next_ts(self) -> str:
        micros = next(self._ts)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _find(self, channel: str, ts: str) -> Message | None:
        return next((m for m in self._messages.get(channel, []) if m.ts == ts), None)

    # -- methods -----------------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Test",
            "user": "deploybot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return _error("channel_not_found")
        if not any(params.get(k) for k in ("text", "blocks", "attachments")):
            return _error("no_text")
        channel = self._channel_id(str(params["channel"]))
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=str(params.get("text") or ""),
            blocks=list(params.get("blocks") or []),
            thread_ts=str(params["thread_ts"]) if params.get("thread_ts") else None,
            reply_broadcast=_truthy(params.get("reply_broadcast")),
        )
        self._messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": message.as_payload()}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return _error("channel_not_found")
        channel = self._channel_id(str(params["channel"]))
        message = self._find(channel, str(params.get("ts") or ""))
        if message is None:
            return _error("message_not_found")
        # Like Slack: fields left out keep their value; "blocks": [] removes the blocks.
        if "text" in params:
            message.text = str(params["text"] or "")
        if "blocks" in params:
            message.blocks = list(params["blocks"] or [])
        message.edits += 1
        message.edited_ts = self._next_ts()
        return {
            "ok": True,
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.as_payload(),
        }

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return _error("channel_not_found")
        if not params.get("user"):
            return _error("user_not_in_channel")
        if not any(params.get(k) for k in ("text", "blocks", "attachments")):
            return _error("no_text")
        ephemeral = Ephemeral(
            channel=self._channel_id(str(params["channel"])),
            user=str(params["user"]),
            message_ts=self._next_ts(),
            text=str(params.get("text") or ""),
            blocks=list(params.get("blocks") or []),
            thread_ts=str(params["thread_ts"]) if params.get("thread_ts") else None,
        )
        self._ephemerals.append(ephemeral)
        return {"ok": True, "message_ts": ephemeral.message_ts}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """``views.open`` and ``views.push``: both need a trigger_id and a view."""
        view = params.get("view")
        if not params.get("trigger_id") or not isinstance(view, dict):
            return _error("invalid_arguments")
        view_id = f"V{next(self._view_ids):08X}"
        stored = self._store_view(view_id, view)
        return {"ok": True, "view": stored}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if not isinstance(view, dict):
            return _error("invalid_arguments")
        view_id = params.get("view_id")
        external_id = params.get("external_id")
        if not view_id and external_id:
            by_external = {v["external_id"]: k for k, v in self._views.items()}
            view_id = by_external.get(external_id)
        if not view_id or view_id not in self._views:
            return _error("not_found")
        if params.get("hash") and params["hash"] != self._views[view_id]["hash"]:
            return _error("hash_conflict")
        return {"ok": True, "view": self._store_view(str(view_id), view)}

    def _store_view(self, view_id: str, view: dict[str, Any]) -> dict[str, Any]:
        stored = {
            "type": "modal",
            "callback_id": "",
            "private_metadata": "",
            "external_id": "",
            **view,
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "root_view_id": view_id,
            "previous_view_id": None,
            "state": {"values": {}},
            "hash": f"{self._next_ts()}.{view_id}",
        }
        self._views[view_id] = stored
        return dict(stored)

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        if not user_id:
            return _error("user_not_found")
        is_bot = user_id == BOT_USER_ID
        name = "deploybot" if is_bot else user_id.lower()
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": "deploybot" if is_bot else f"User {user_id}",
            "deleted": False,
            "is_bot": is_bot,
            "tz": "UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
        }
        user.update(self.users.get(user_id, {}))
        user.setdefault("profile", {"real_name": user["real_name"], "display_name": user["name"]})
        return {"ok": True, "user": user}

    def _usergroups_list(self, params: dict[str, Any]) -> dict[str, Any]:
        groups = []
        for group_id, members in self.usergroups.items():
            handle = self.usergroup_handles.get(group_id, group_id.lower())
            group: dict[str, Any] = {
                "id": group_id,
                "team_id": TEAM_ID,
                "is_usergroup": True,
                "name": handle,
                "handle": handle,
                "user_count": len(members),
            }
            if _truthy(params.get("include_users")):
                group["users"] = list(members)
            groups.append(group)
        return {"ok": True, "usergroups": groups}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        members = self.usergroups.get(str(params.get("usergroup") or ""))
        if members is None:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(members)}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return _error("channel_not_found")
        channel = self._channel_id(str(params["channel"]))
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": self.channels.get(channel, channel.lower()),
                "is_channel": channel.startswith("C"),
                "is_im": channel.startswith("D"),
                "is_private": channel.startswith("G"),
                "is_archived": False,
                "is_member": True,
            },
        }


class _FakeSlackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _FakeSlackHandler)


class _FakeSlackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FakeSlackServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake's record is ``FakeSlack.calls()``, not stderr."""

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reply_headers, body = self.server.fake._serve(url.path, url.query, raw, headers)
        self.send_response(status)
        for name, value in reply_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _parse_params(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
    """Query string plus a JSON or form body, JSON-in-form fields decoded."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if raw:
        if "json" in content_type or raw.lstrip().startswith(b"{"):
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("JSON body is not an object")
            params.update(body)
        else:
            params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    for name in _JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            params[name] = json.loads(value)
    return params


def _error(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body).encode("utf-8")


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _stable_hex(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:10].upper()


def _brief(params: Mapping[str, Any]) -> str:
    text = json.dumps({k: v for k, v in params.items() if k != "token"}, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


# -- requests from Slack to the bot ----------------------------------------------------------


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
        user_name: str | None = None,
        trigger_id: str | None = None,
        retry_num: int | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Response:
        """A modal's submit: ``payload=`` view_submission JSON with ``state.values``.

        ``values`` maps block_id to action_id to the element's value dict, for example
        ``{"reason": {"reason_input": {"type": "plain_text_input", "value": "flaky"}}}``.
        """
        seq = next(self._seq)
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
                "blocks": [],
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": {k: dict(v) for k, v in values.items()}},
                "hash": view_hash or f"{int(time.time())}.{seq:08d}",
                "title": {"type": "plain_text", "text": "deploybot"},
                "clear_on_close": False,
                "notify_on_close": False,
                "previous_view_id": None,
                "root_view_id": view_id,
                "app_id": self.api_app_id,
                "external_id": "",
                "app_installed_team_id": self.team_id,
                "bot_id": BOT_ID,
            },
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._send_payload(payload, retry_num, timestamp, signature)

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


# -- serving the bot -------------------------------------------------------------------------


@dataclass
class ServedApp:
    """A WSGI app being served on loopback; ``stop()`` (or leaving the ``with``) ends it."""

    url: str
    stop: Callable[[], None]

    @property
    def events_url(self) -> str:
        """Bolt's default endpoint on this server."""
        return f"{self.url}/slack/events"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietWSGIHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: test output shows failures, not access logs."""


def serve_wsgi(app: WSGIApplication) -> ServedApp:
    """Serve ``app`` on ``127.0.0.1`` at an OS-chosen port in a daemon thread.

    ``url`` is ``http://127.0.0.1:<port>`` (no trailing slash).
    """
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietWSGIHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi", daemon=True
    )
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return ServedApp(url=f"http://127.0.0.1:{server.server_port}", stop=stop)
