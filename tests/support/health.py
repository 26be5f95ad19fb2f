"""A health endpoint on loopback that tests break and heal, for probes to check."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class HealthEndpoint:
    """Answers 200 while ``check()`` is true, else 503. ``GET /heal`` makes it healthy again
    (what a rollback command can call); ``healthy = False`` breaks it."""

    def __init__(self) -> None:
        self.check: Callable[[], bool] = lambda: True
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/heal":
                    endpoint.healthy = True
                ok = endpoint.check()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if ok else b"no")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def healthy(self) -> bool:
        return self.check()

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self.check = lambda: value

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[HealthEndpoint]:
    endpoint = HealthEndpoint()
    yield endpoint
    endpoint.close()
