"""The bot's waitress server on a thread: closed in waitress's order, from the loop's thread.

Each server here polls with a 60 s ``select`` timeout (waitress's default is 1 s): a close that
does not wake the loop, or that closes sockets from another thread, shows as a loop still
running (or a lost answer) instead of as a rare one-second delay or EBADF.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import waitress

from sandbox.serving import WaitressInBackground

App = Callable[[dict[str, Any], Any], Iterable[bytes]]


def ok(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def serve(app: App) -> WaitressInBackground:
    server = waitress.create_server(
        app, host="127.0.0.1", port=0, threads=2, asyncore_loop_timeout=60
    )
    return WaitressInBackground(server, name="test-waitress")


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    return errors


def get(port: int) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/", timeout=10) as answer:
        body: bytes = answer.read()
    return body


def test_close_answers_the_request_in_flight_then_stops(
    thread_errors: list[BaseException | None], caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        entered.set()
        release.wait(10)
        return ok(environ, start_response)

    served = serve(slow)
    port = served.port
    answers: list[bytes] = []
    client = threading.Thread(target=lambda: answers.append(get(port)))
    client.start()
    assert entered.wait(10)
    # The answer finishes while close() waits: it still reaches the client, and its task
    # thread does not pull a trigger closed under it ("Exception when servicing": EBADF).
    threading.Timer(0.3, release.set).start()
    served.close(timeout=5)
    client.join(15)

    assert answers == [b"ok"]
    assert not served._thread.is_alive()  # the loop ended by itself
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert thread_errors == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    served.close()  # twice is harmless


def test_close_wakes_the_loop_and_ends_it(thread_errors: list[BaseException | None]) -> None:
    for _ in range(20):
        served = serve(ok)
        assert get(served.port) == b"ok"
        served.close(timeout=2)
        assert not served._thread.is_alive()
    assert thread_errors == []
