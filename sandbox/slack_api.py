"""Slack's Web API on loopback: the stand-in the sandbox (and the tests) point the bot at.

``FakeSlack`` stands in for ``https://slack.com/api/``: point ``WebClient(base_url=...)`` at
``fake.base_url``. It records every call, answers like Slack (``ok``/``error`` bodies, HTTP 429
with ``Retry-After``), and keeps what a user would see in each channel. POSTs to the response
URLs it hands out (``fake.response_url(name)``) are recorded too. Requests for any other path
go to ``pages``, when given: the sandbox serves its web page from the same server.

It binds ``127.0.0.1``, port 0 unless told otherwise, so tests run in parallel (``pytest -n``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from sandbox.serving import ServedInBackground
from sandbox.slack_files import UPLOAD_PREFIX, File, FileStore

TEAM_ID = "T0TEST"
TEAM_DOMAIN = "test"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0DEPLOYBOT"
DEFAULT_TOKEN = "xoxb-test"

# Form fields whose value Slack (and slack_sdk) sends as a JSON document inside the form.
_JSON_FIELDS = ("blocks", "attachments", "view", "metadata", "files")
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
    posted_at: float = 0.0  # time.monotonic() when posted: orders messages among ephemerals
    files: list[dict[str, Any]] = field(default_factory=list)  # shared files (file objects)

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
        if self.files:
            payload["files"] = self.files
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
    posted_at: float = 0.0  # time.monotonic() when posted


@dataclass(frozen=True)
class _Fault:
    kind: Literal["ratelimited", "error", "http"]
    error: str
    retry_after: int = 0
    status: int = 500


Reply = tuple[int, dict[str, str], bytes]
"""An HTTP answer: status, headers, body."""
Pages = Callable[[str, str, str, bytes, dict[str, str]], Reply]
"""Serves the paths that are not Slack's: (method, path, query, body, headers) to a reply."""
_Reply = Reply
_Handler = Callable[[dict[str, Any]], dict[str, Any]]


class FakeSlack(ServedInBackground):
    """A threaded HTTP server on ``127.0.0.1:0`` that answers like Slack's Web API.

    Starts when constructed; use it as a context manager (or call ``close()``). Configure
    ``token``, ``channels`` (ID to name), ``users`` (ID to ``users.info`` fields),
    ``usergroups`` (ID to member IDs) and ``usergroup_handles`` (ID to handle) at any time.
    ``socket_mode_url`` is the ``ws://`` URL ``apps.connections.open`` hands to an app-level
    (``xapp-``) token; None (the default) refuses Socket Mode.

    Args:
        token: The bot token it accepts.
        port: The loopback port to listen on (0: any free one).
        pages: Serves every path outside ``/api/`` and ``/response/`` (the sandbox's page).
        on_change: Called after each Web API or response URL call was recorded.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        port: int = 0,
        pages: Pages | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.token = token
        self.pages = pages
        self.on_change = on_change
        self.channels: dict[str, str] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.usergroup_handles: dict[str, str] = {}
        self.socket_mode_url: str | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._messages: dict[str, list[Message]] = defaultdict(list)
        self._ephemerals: list[Ephemeral] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._homes: dict[str, dict[str, Any]] = {}  # user ID -> the Home view published
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._post_spacing: tuple[float, int] | None = None  # see limit_posts
        self._last_post: dict[str, float] = {}  # channel -> when a post was last accepted
        self._ts = itertools.count(1_700_000_000_000_100, 100)  # microseconds
        self._view_ids = itertools.count(1)
        self._view_triggers: dict[str, str] = {}
        self._files = FileStore()
        self._methods: dict[str, _Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": lambda p: self._files.get_upload_url(p, self.url),
            "files.completeUploadExternal": self._complete_upload,
        }
        self._start_serving(_FakeSlackServer(self, port), "fake-slack")

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

    # -- fault injection ---------------------------------------------------------------------

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 and ``Retry-After``."""
        with self._lock:
            self._faults[method].extend([_Fault("ratelimited", "ratelimited", retry_after)] * times)

    def limit_posts(self, *, spacing: float = 1.0, retry_after: int = 1) -> None:
        """Refuse a ``chat.postMessage`` with 429 when the channel had a post accepted less
        than ``spacing`` seconds before, as Slack does beyond about one post per second per
        channel."""
        with self._lock:
            self._post_spacing = (spacing, retry_after)

    def fail(self, method: str, *, error: str = "channel_not_found", times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``.

        For ``"response_url"`` the failure is an HTTP 404 whose body is ``error``.
        """
        with self._lock:
            self._faults[method].extend([_Fault("error", error)] * times)

    def outage(self, method: str, *, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with a bare HTTP ``status`` (a 5xx)."""
        with self._lock:
            self._faults[method].extend([_Fault("http", "outage", status=status)] * times)

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

    def files(self) -> list[File]:
        """Files uploaded so far (completed or not), in the order they were announced."""
        with self._lock:
            return [dataclasses.replace(f) for f in self._files.files.values()]

    def views(self) -> dict[str, dict[str, Any]]:
        """Open views by view ID, as last opened, pushed or updated."""
        with self._lock:
            return {k: dict(v) for k, v in self._views.items()}

    def homes(self) -> dict[str, dict[str, Any]]:
        """Published App Home views by user ID, as last published."""
        with self._lock:
            return {k: dict(v) for k, v in self._homes.items()}

    def channel_id(self, channel: str) -> str:
        """The ID of a channel (``#deploys``, ``deploys`` or an ID), registering a new name."""
        with self._lock:
            return self._channel_id(channel)

    def view_trigger(self, view_id: str) -> str | None:
        """The ``trigger_id`` that opened (or pushed) the view, which says who it is shown to."""
        with self._lock:
            return self._view_triggers.get(view_id)

    def reset(self) -> None:
        """Forget calls, messages, ephemerals, views and pending faults; keep configuration."""
        with self._lock:
            self._calls.clear()
            self._messages.clear()
            self._ephemerals.clear()
            self._views.clear()
            self._homes.clear()
            self._view_triggers.clear()
            self._faults.clear()
            self._last_post.clear()
            self._files = FileStore()

    # -- request handling (server threads) ---------------------------------------------------

    def _serve(
        self, method: str, path: str, query: str, raw: bytes, headers: dict[str, str]
    ) -> _Reply:
        if path.startswith(UPLOAD_PREFIX) and method == "POST":
            return self._upload(path, raw, headers)
        if path.startswith(("/api/", "/response/")):
            if path.startswith("/api/"):
                reply = self._api(path, query, raw, headers)
            else:
                reply = self._response_url(path, raw, headers)
            if self.on_change is not None:
                self.on_change()
            return reply
        if self.pages is not None:
            return self.pages(method, path, query, raw, headers)
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
            fault = self._take_fault(method) or self._too_soon(method, params)
            if fault is not None and fault.kind == "http":
                self._changed.notify_all()
                return fault.status, {"Content-Type": "text/plain"}, b"upstream unavailable"
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

    def _upload(self, path: str, raw: bytes, headers: dict[str, str]) -> _Reply:
        """A file's bytes POSTed to the URL ``files.getUploadURLExternal`` handed out."""
        with self._changed:
            self._calls.append(
                Call("upload", {"length": len(raw)}, headers, time.monotonic(), path)
            )
            fault = self._take_fault("upload")
            status, body = (
                (fault.status, b"upload failed") if fault else self._files.upload(path, raw)
            )
            self._changed.notify_all()
        if self.on_change is not None:
            self.on_change()
        return status, {"Content-Type": "text/plain"}, body

    def _too_soon(self, method: str, params: dict[str, Any]) -> _Fault | None:
        """The 429 of :meth:`limit_posts`, or None (the post is accepted and timed)."""
        if method != "chat.postMessage" or self._post_spacing is None:
            return None
        spacing, retry_after = self._post_spacing
        channel = self._channel_id(str(params.get("channel")), register=False)
        now = time.monotonic()
        if now - self._last_post.get(channel, -spacing) < spacing:
            return _Fault("ratelimited", "ratelimited", retry_after)
        self._last_post[channel] = now
        return None

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
        if method == "apps.connections.open":
            return self._connections_open(token)
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

    def _connections_open(self, token: str) -> dict[str, Any]:
        """Socket Mode's WebSocket URL, for an app-level token only (like Slack)."""
        if not token.startswith("xapp-"):
            return _error("not_allowed_token_type")
        if self.socket_mode_url is None:
            return _error("invalid_auth")  # the fake's answer: no Socket Mode configured
        return {"ok": True, "url": self.socket_mode_url}

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
            posted_at=time.monotonic(),
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
            posted_at=time.monotonic(),
        )
        self._ephemerals.append(ephemeral)
        return {"ok": True, "message_ts": ephemeral.message_ts}

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        """Finish uploads; with ``channel_id`` (and ``thread_ts``) share them there, as a
        message carrying the files (and ``initial_comment`` as its text)."""
        channel = self._channel_id(str(params["channel_id"])) if params.get("channel_id") else None
        thread = str(params["thread_ts"]) if params.get("thread_ts") else None
        answer = self._files.complete(params, channel)
        if answer["ok"] and channel:
            message = Message(
                channel=channel,
                ts=self._next_ts(),
                text=str(params.get("initial_comment") or ""),
                blocks=[],
                thread_ts=thread,
                posted_at=time.monotonic(),
                files=answer["files"],
            )
            self._messages[channel].append(message)
        return answer

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """``views.open`` and ``views.push``: both need a trigger_id and a view."""
        view = params.get("view")
        if not params.get("trigger_id") or not isinstance(view, dict):
            return _error("invalid_arguments")
        view_id = f"V{next(self._view_ids):08X}"
        self._view_triggers[view_id] = str(params["trigger_id"])
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

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        """``views.publish``: a user's App Home, replaced whole each time."""
        view, user = params.get("view"), params.get("user_id")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or not user:
            return _error("invalid_arguments")
        if view.get("type") != "home":
            return _error("invalid_arguments")
        stored = {**view, "id": f"VHOME{_stable_hex(str(user))[:8].upper()}", "team_id": TEAM_ID}
        self._homes[str(user)] = stored
        return {"ok": True, "view": dict(stored)}

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

    def __init__(self, fake: FakeSlack, port: int) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", port), _FakeSlackHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a page's aborted long poll) is no error worth a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


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
        status, reply_headers, body = self.server.fake._serve(
            self.command, url.path, url.query, raw, headers
        )
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
