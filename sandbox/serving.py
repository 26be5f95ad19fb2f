"""Servers on loopback, served from a daemon thread, closed by ``with`` or close(): the
stand-ins (``socketserver``) and the bot itself (waitress)."""

from __future__ import annotations

import threading
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Self

from waitress import wasyncore


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


class WaitressInBackground:
    """A waitress server (``bot.server.serve_http``) running on a daemon thread of its own.

    waitress's ``server.close()`` belongs in its loop's thread: called from another one, it
    closes the listening socket and the trigger pipe under the loop's ``select``, which fails
    with EBADF (an exception in the server's thread) or first sleeps out its 1 s timeout; and a
    task thread finishing an answer then pulls the closed (or already reused) trigger.
    ``close()`` here goes in waitress's own order (``MultiSocketServer.close``: the task threads
    first, then the sockets), with the closing done in the loop's thread: stop accepting, let
    the requests being answered finish, send what they wrote, close every connection and the
    trigger; the loop then ends by itself.
    """

    def __init__(self, server: Any, *, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.run, name=name, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, finish the requests being answered, close the rest; wait for it."""
        if not self._thread.is_alive():
            self.server.task_dispatcher.shutdown(timeout=timeout)
            return
        server = self.server
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

        # The trigger runs these in the loop's thread, between two selects; once the map is
        # empty the loop returns.
        server.trigger.pull_trigger(stop_accepting)
        not_accepting.wait(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)  # requests being answered finish
        server.trigger.pull_trigger(close_the_rest)
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
