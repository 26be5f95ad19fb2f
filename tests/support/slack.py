"""Slack on loopback for tests: the sandbox's fake Web API and signed requests, re-exported,
and ``serve_wsgi`` to serve a WSGI app (the bot) on an OS-chosen port in a thread.

``FakeSlack`` (:mod:`sandbox.slack_api`) and ``SlackRequests``
(:mod:`sandbox.slack_requests`) live in the package, since ``deploybot sandbox`` runs
them; tests import them from here as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sandbox.slack_api import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_TOKEN,
    TEAM_DOMAIN,
    TEAM_ID,
    Call,
    Ephemeral,
    FakeSlack,
    Message,
)
from sandbox.slack_requests import Response, SlackRequests

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "DEFAULT_TOKEN",
    "TEAM_DOMAIN",
    "TEAM_ID",
    "Call",
    "Ephemeral",
    "FakeSlack",
    "Message",
    "Response",
    "ServedApp",
    "SlackRequests",
    "serve_wsgi",
]

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
