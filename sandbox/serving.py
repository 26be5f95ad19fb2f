"""Servers on loopback, served from a daemon thread, closed by ``with`` or close(): the
stand-ins (``socketserver``) and the bot itself (waitress)."""

from __future__ import annotations

import threading
from socketserver import TCPServer
from types import TracebackType
from typing import Self

from bot.server import HttpServing


class ServedInBackground:
    """Mixin for the stand-ins (Slack, PagerDuty, Kubernetes): start, stop, context manager."""

    _server: TCPServer
    _thread: threading.Thread

    def _start_serving(self, server: TCPServer, name: str) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self._thread.start()

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


# Moved into the runtime package: `deploybot serve` closes its server the same way on SIGTERM.
WaitressInBackground = HttpServing
