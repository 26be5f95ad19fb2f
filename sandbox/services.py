"""The demo's services: health endpoints whose answer follows the version the cluster runs.

One HTTP server on loopback serves every demo service at ``/<env>/<service>/health``. A
service may be tied to a Deployment in the sandbox's Kubernetes stand-in: it is then as
healthy as the image that Deployment runs. "Break" marks the image running now as bad (as
when a release starts failing under real traffic), so a ``rollout undo`` to the previous
image makes it healthy again; "heal" forgets which images were bad.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sandbox.kube import FakeKube

DEFAULT_ORIGIN = "http://127.0.0.1:18080"
"""Where the demo config says the services are; the sandbox puts the real origin there."""


@dataclass
class DemoService:
    """One service of one environment.

    Attributes:
        env: The environment (``staging``), the first part of its path.
        name: The service (``checkout``), the second part.
        deployment: ``(namespace, name)`` of the Deployment it runs as, if any.
        bad_images: Images that answer 503 (set by "break").
        broken: Answers 503 whatever it runs (services without a Deployment).
    """

    env: str
    name: str
    deployment: tuple[str, str] | None = None
    bad_images: set[str] = field(default_factory=set)
    broken: bool = False

    @property
    def key(self) -> str:
        return f"{self.env}/{self.name}"


class DemoServices:
    """The demo services' server; starts when constructed, ``close()`` stops it."""

    def __init__(
        self,
        services: list[DemoService],
        *,
        kube: FakeKube | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.kube = kube
        self.on_change = on_change
        self._services = {s.key: s for s in services}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="sandbox-services",
            daemon=True,
        )
        self._thread.start()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def break_service(self, key: str) -> None:
        """Make ``env/name`` fail: the image it runs now (or the service itself) turns bad.

        Raises:
            KeyError: no such service.
        """
        with self._lock:
            service = self._services[key]
            image = self._image(service)
            if image is None:
                service.broken = True
            else:
                service.bad_images.add(image)
        self.on_change()

    def heal_service(self, key: str) -> None:
        """Make ``env/name`` healthy again, whatever it runs.

        Raises:
            KeyError: no such service.
        """
        with self._lock:
            service = self._services[key]
            service.bad_images.clear()
            service.broken = False
        self.on_change()

    def health(self, key: str) -> tuple[bool, str]:
        """Whether ``env/name`` is healthy now, and the line its health endpoint answers.

        Raises:
            KeyError: no such service.
        """
        with self._lock:
            service = self._services[key]
            image = self._image(service)
            bad = service.broken or (image is not None and image in service.bad_images)
        version = image.rsplit(":", 1)[-1] if image else "unversioned"
        if bad:
            return False, f"unhealthy: {service.name} {version} answers 500s to checkout calls"
        return True, f"ok: {service.name} {version}"

    def describe(self) -> list[dict[str, Any]]:
        """Every service, for the sandbox's page."""
        rows = []
        for key, service in list(self._services.items()):
            healthy, detail = self.health(key)
            rows.append(
                {
                    "key": key,
                    "env": service.env,
                    "name": service.name,
                    "url": f"{self.origin}/{key}/health",
                    "healthy": healthy,
                    "detail": detail,
                }
            )
        return rows

    def _image(self, service: DemoService) -> str | None:
        if service.deployment is None or self.kube is None:
            return None
        namespace, name = service.deployment
        try:
            deployment = self.kube.get("deployments", namespace, name)
        except KeyError:
            return None
        containers = deployment["spec"]["template"]["spec"]["containers"]
        return str(containers[0]["image"])


def _handler_for(services: DemoServices) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            key = self.path.split("?")[0].removesuffix("/health").strip("/")
            if not self.path.split("?")[0].endswith("/health"):
                self._answer(404, {"status": "not found"})
                return
            try:
                healthy, detail = services.health(key)
            except KeyError:
                self._answer(404, {"status": "not found"})
                return
            self._answer(200 if healthy else 503, {"status": detail})

        def _answer(self, status: int, body: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the page shows the services' state."""

    return Handler
