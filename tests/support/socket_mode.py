"""Slack's Socket Mode endpoint on loopback: a WebSocket server that speaks the protocol.

Point ``FakeSlack.socket_mode_url`` at ``server.url``; ``apps.connections.open`` then hands
it to the bot. On each connection the server sends ``{"type": "hello", ...}`` as Slack
does; the test pushes envelopes (``push``) and waits for the bot's acks (``ack``), which
Slack's client sends as ``{"envelope_id": ..., "payload"?: ...}``.

See https://docs.slack.dev/apis/events-api/using-socket-mode/.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from types import TracebackType
from typing import Any, Self

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from sandbox.slack_api import APP_ID


class SocketModeServer:
    """A WebSocket server on ``127.0.0.1:0``; starts when constructed, use it with ``with``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._connections: list[ServerConnection] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        """Every JSON message the clients sent (acks included), oldest first."""
        self._server = serve(self._serve, "127.0.0.1", 0)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="socket-mode", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The ``ws://`` URL ``apps.connections.open`` answers with."""
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link/?ticket={uuid.uuid4()}&app_id={APP_ID}"

    def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until a client is connected (and was sent its ``hello``)."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._connections), timeout):
                raise AssertionError(f"no Socket Mode client connected within {timeout}s")

    def push(
        self, type: str, payload: dict[str, Any], *, accepts_response_payload: bool = False
    ) -> str:
        """Send an envelope (``"slash_commands"``, ``"interactive"``, ``"events_api"``) to the
        most recent connection; returns its ``envelope_id``."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._lock:
            if not self._connections:
                raise AssertionError("no Socket Mode client is connected")
            connection = self._connections[-1]
        connection.send(json.dumps(envelope))
        return envelope_id

    def ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The client's acknowledgement of ``envelope_id``; fails after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: envelope_id in self._acks, timeout):
                raise AssertionError(
                    f"no ack for envelope {envelope_id} within {timeout}s; got {self.received}"
                )
            return self._acks[envelope_id]

    def close(self) -> None:
        """Close every connection, stop serving and release the port."""
        self._server.shutdown()
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

    def _serve(self, connection: ServerConnection) -> None:
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "applink-test", "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        connection.send(json.dumps(hello))
        with self._changed:
            self._connections.append(connection)
            self._changed.notify_all()
        try:
            for raw in connection:
                message = json.loads(raw)
                with self._changed:
                    self.received.append(message)
                    if isinstance(message, dict) and "envelope_id" in message:
                        self._acks[str(message["envelope_id"])] = message
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._changed:
                self._connections.remove(connection)
                self._changed.notify_all()


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return result
