"""HTTP serving: Bolt at ``/slack/events`` beside the health endpoints, on waitress."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from slack_bolt import App

from bot.ops import metrics
from bot.slack.edge import EdgeHandler

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)


def make_wsgi(
    app: App | None,
    *,
    signing_secret: str,
    ready: Callable[[], tuple[bool, str]],
    registry: Collector | None = None,
) -> WSGIApplication:
    """Bolt at ``/slack/events`` (behind :class:`~bot.slack.edge.EdgeHandler`, which answers
    malformed requests itself) with ``/healthz``, ``/readyz`` and ``/metrics`` beside it.
    Without ``app`` (a ``deploybot worker``) only the health endpoints are served.

    ``/metrics`` serves ``registry`` in Prometheus' text format (the process-wide metrics
    when None; ``deploybot_sessions`` needs the registry of :func:`bot.ops.metrics.registry_for`).
    """
    slack = EdgeHandler(app, signing_secret) if app is not None else None
    registry = registry or metrics.registry_for(None)

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _plain(start_response, 200, "ok")
        if path == "/readyz":
            ok, why = ready()
            return _plain(start_response, 200 if ok else 503, why)
        if path == "/metrics":
            body = generate_latest(registry)
            headers = [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        if slack is None:
            return _plain(start_response, 404, "not found: a worker serves health endpoints only")
        return slack(environ, start_response)

    return wsgi


def _plain(start_response: StartResponse, status: int, text: str) -> list[bytes]:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    body = (text + "\n").encode()
    start_response(
        f"{status} {reason}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def waitress_server(wsgi: WSGIApplication, *, host: str, port: int, threads: int = 16) -> Any:
    """A waitress server (multi-threaded, production grade); call ``.run()`` on it."""
    import waitress

    return waitress.create_server(wsgi, host=host, port=port, threads=threads)


class HttpServing:
    """A waitress server running on a daemon thread, closed gracefully from another one.

    waitress's ``close()`` belongs in its loop's thread; here the closing steps go through
    its trigger, in waitress's own order: stop accepting, let the requests being answered
    finish, send what they wrote, close the connections (then the loop ends by itself).
    """

    def __init__(self, server: Any, *, name: str = "waitress") -> None:
        self.server = server
        self._thread = threading.Thread(target=server.run, name=name, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, finish the requests being answered, close the rest; wait for it."""
        from waitress import wasyncore

        server = self.server
        if not self._thread.is_alive():
            server.task_dispatcher.shutdown(timeout=timeout)
            return
        not_accepting = threading.Event()

        def stop_accepting() -> None:  # the listening socket only: answers pull the trigger
            wasyncore.dispatcher.close(server)
            not_accepting.set()

        def close_the_rest() -> None:  # the trigger, idle connections; the others once sent
            for dispatcher in list(server._map.values()):
                if getattr(dispatcher, "total_outbufs_len", 0):
                    dispatcher.close_when_flushed = True
                else:
                    dispatcher.close()

        server.trigger.pull_trigger(stop_accepting)
        not_accepting.wait(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)  # requests being answered finish
        try:
            server.trigger.pull_trigger(close_the_rest)
        except OSError:  # the trigger is closed already: the loop has ended, or is ending
            log.info("waitress's loop closed its trigger before the last close step")
        self._thread.join(timeout)
