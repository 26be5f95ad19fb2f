"""The sandbox's page, served by the Slack stand-in beside Slack's own paths.

- ``GET /`` is the page, ``GET /static/sandbox.js`` and ``/static/sandbox.css`` its script and
  style (no build step);
- ``GET /sandbox/state?user=U&after=N`` answers with everything the page shows to ``U`` once
  the sandbox has changed past revision ``N`` (a long poll, at most ``POLL_SECONDS``);
- ``POST /sandbox/command``, ``/sandbox/action``, ``/sandbox/submit``, ``/sandbox/close``,
  ``/sandbox/service`` and ``/sandbox/rollout`` carry out what someone did on the page.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from sandbox.slack_api import Reply
from sandbox.workspace import PageError, Workspace

log = logging.getLogger(__name__)
POLL_SECONDS = 20.0
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/sandbox.js": ("sandbox.js", "text/javascript; charset=utf-8"),
    "/static/sandbox.css": ("sandbox.css", "text/css; charset=utf-8"),
}


class Changes:
    """A revision number that goes up whenever something the page shows may have changed."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._revision = 0
        self._closed = False

    @property
    def revision(self) -> int:
        with self._condition:
            return self._revision

    def bump(self) -> None:
        with self._condition:
            self._revision += 1
            self._condition.notify_all()

    def wait(self, after: int, timeout: float) -> int:
        """The revision once it is past ``after`` (or at ``timeout``, or when closed)."""
        with self._condition:
            self._condition.wait_for(lambda: self._revision > after or self._closed, timeout)
            return self._revision

    def close(self) -> None:
        """Wake every waiting poll: the sandbox is stopping."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class Page:
    """Serves the page and its JSON endpoints (the ``pages`` of :class:`FakeSlack`)."""

    def __init__(self, changes: Changes, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.changes = changes
        self.poll_seconds = poll_seconds
        self.workspace: Workspace | None = None  # set once the bot is up
        self._posts: dict[str, Callable[[Workspace, dict[str, Any]], Any]] = {
            "/sandbox/command": lambda w, b: w.command(b["user"], b["channel"], b["text"]),
            "/sandbox/action": lambda w, b: w.action(b["user"], b),
            "/sandbox/submit": lambda w, b: w.submit(b["user"], b["view_id"], b["values"]),
            "/sandbox/close": lambda w, b: w.close_view(b["user"], b["view_id"]),
            "/sandbox/home": lambda w, b: w.open_home(b["user"]),
            "/sandbox/service": _service,
            "/sandbox/rollout": _rollout,
        }

    def __call__(
        self, method: str, path: str, query: str, raw: bytes, headers: dict[str, str]
    ) -> Reply:
        host = headers.get("host", "").rsplit(":", 1)[0]
        if host not in LOCAL_HOSTS:
            # Another name for loopback (DNS rebinding) is some other site's page calling.
            return _json(403, {"error": f"the sandbox answers on 127.0.0.1, not {host!r}"})
        try:
            if method == "GET" and path in STATIC:
                name, content_type = STATIC[path]
                body = resources.files("sandbox").joinpath("static", name).read_bytes()
                return 200, {"Content-Type": content_type, "Cache-Control": "no-store"}, body
            if method == "GET" and path == "/sandbox/state":
                return self._state(parse_qs(query))
            if method == "POST" and path in self._posts:
                return self._post(path, raw, headers)
            if method == "GET" and path == "/favicon.ico":
                return 204, {}, b""
            return _json(404, {"error": f"no {method} {path}"})
        except PageError as error:
            return _json(400, {"error": str(error)})
        except (KeyError, TypeError, ValueError) as error:
            return _json(400, {"error": f"bad request: {type(error).__name__}: {error}"})
        except Exception as error:  # a page request must never take the server down
            log.exception("sandbox page: %s %s failed", method, path)
            return _json(500, {"error": f"{type(error).__name__}: {error}"})

    def _state(self, query: dict[str, list[str]]) -> Reply:
        user = (query.get("user") or [""])[0]
        after = int((query.get("after") or ["-1"])[0])
        revision = self.changes.wait(after, self.poll_seconds)
        workspace = self.workspace
        if workspace is None:
            return _json(503, {"error": "the sandbox is starting"})
        return _json(200, {"revision": revision, **workspace.state(user)})

    def _post(self, path: str, raw: bytes, headers: dict[str, str]) -> Reply:
        # The page's own script sends JSON; refusing forms keeps other sites from posting here.
        if "application/json" not in headers.get("content-type", ""):
            return _json(415, {"error": "send JSON"})
        workspace = self.workspace
        if workspace is None:
            return _json(503, {"error": "the sandbox is starting"})
        body = json.loads(raw or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body is not a JSON object")
        answer = self._posts[path](workspace, body)
        return _json(200, answer if isinstance(answer, dict) else {"ok": True})


def _service(workspace: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    if workspace.services is None:
        raise PageError("This sandbox runs no demo services.")
    key = str(body["key"])
    if body.get("healthy"):
        workspace.services.heal_service(key)
    else:
        workspace.services.break_service(key)
    return {"ok": True}


def _rollout(workspace: Workspace, body: dict[str, Any]) -> dict[str, Any]:
    if workspace.cluster is None:
        raise PageError("This sandbox runs no cluster.")
    image = workspace.cluster.roll_out(str(body["namespace"]), str(body["name"]))
    return {"image": image}


def _json(status: int, body: dict[str, Any]) -> Reply:
    data = json.dumps(body).encode("utf-8")
    return status, {"Content-Type": "application/json; charset=utf-8"}, data
