"""moto's threaded server on loopback, and an environment that points boto3 at it.

moto's server runs in the test process, so its configuration (``/moto-api/config``) and the
variables it reads (``MOTO_ECS_SERVICE_RUNNING``, ``DOCKER_HOST``) are that process's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port; yields its URL.

    Whatever Lambda configuration a test posts to ``/moto-api/config`` is put back at the end;
    werkzeug's access log (a line per request) is quiet meanwhile.
    """
    access_log = logging.getLogger("werkzeug")  # moto's server logs every request at INFO
    level = access_log.level
    access_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    before = httpx.get(f"{endpoint}/moto-api/config").json()
    try:
        yield endpoint
    finally:
        httpx.post(f"{endpoint}/moto-api/config", json={"lambda": before["lambda"]})
        server.stop()
        access_log.setLevel(level)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server on a free loopback port, for one test module."""
    with moto_server() as endpoint:
        yield endpoint


def use_moto(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> None:
    """Fake credentials and a region, nothing from ~/.aws, ``AWS_ENDPOINT_URL`` at moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
