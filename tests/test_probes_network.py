"""Every probe kind against real peers on loopback: pass, fail, timeout, bad configuration.

Servers bind port 0 (the OS picks), so the tests run in parallel. A "silent" peer accepts
connections (the kernel completes the handshake from the listen backlog) and never says a
word: the probe must give up within its own timeout and say so.
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import sqlite3
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from bot.config.probe_specs import (
    HttpProbe,
    ProbeSpec,
    TcpProbe,
)
from bot.integrations.probes import ProbeContext, ProbeResult, run_probe, run_probes
from tests.support.timing import HANG_MARGIN

POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARGIN = HANG_MARGIN

# --- peers ------------------------------------------------------------------------------


class HealthHandler(BaseHTTPRequestHandler):
    """Health endpoints: /health (JSON), /down (503), /text, /slow?ms=N, /echo, /redirect."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/slow":
            time.sleep(int(query.get("ms", ["300"])[0]) / 1000)
        routes: dict[str, tuple[int, str, str]] = {
            "/health": (200, "application/json", json.dumps(HEALTH)),
            "/slow": (200, "application/json", json.dumps(HEALTH)),
            "/down": (503, "text/plain", "database unreachable"),
            "/text": (200, "text/plain", "all good"),
            "/echo": (200, "application/json", json.dumps(dict(self.headers.items()))),
        }
        if url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, content_type, body = routes.get(url.path, (404, "text/plain", "no such page"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


HEALTH = {
    "status": "ok",
    "checks": {"db": "up", "cache": "up"},
    "shards": [1, 2],
    "ready": True,
    "error_rate": 0.004,
    "latency_ms": [120, 250],
}


class _Threading(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 40 probes connect at once; the default backlog of 5 drops SYNs


@contextmanager
def serving(server: socketserver.TCPServer) -> Iterator[int]:
    """Run a TCP socketserver in a thread for the duration of the block; yields its port."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield int(server.socket.getsockname()[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler] = HealthHandler) -> Iterator[str]:
    """A threaded HTTP server on loopback; yields its base URL."""
    with serving(_Threading(("127.0.0.1", 0), handler)) as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def silent_peer(kind: int = socket.SOCK_STREAM) -> Iterator[int]:
    """A port that accepts TCP connections (or UDP datagrams) and never answers."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
        yield sock.getsockname()[1]


def closed_port() -> int:
    """A port nothing listens on (connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class BannerHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"220 mail ESMTP ready\r\n")


class PingHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().strip()
        self.wfile.write(b"+PONG\r\n" if line == b"PING" else b"-ERR unknown command\r\n")


ZONE = {
    "example.test.": {
        "A": [RR("example.test.", QTYPE.A, rdata=A("10.0.0.7"), ttl=60)],
        "MX": RR.fromZone("example.test. 300 IN MX 10 mail.example.test."),
        "TXT": RR.fromZone('example.test. 300 IN TXT "v=spf1 include:_spf.example.test ~all"'),
    },
}


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from ``ZONE``: NXDOMAIN for unknown names, an empty answer for missing types."""

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower()
        if name not in ZONE:
            reply.header.rcode = RCODE.NXDOMAIN
        for record in ZONE.get(name, {}).get(QTYPE[request.q.qtype], []):
            reply.add_answer(record)
        return reply


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    with http_server() as url:
        yield url


@pytest.fixture(scope="module")
def nameserver() -> Iterator[int]:
    server = DNSServer(
        ZoneResolver(), address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None)
    )
    server.start_thread()
    try:
        yield int(server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@contextmanager
def tls_server(ca: trustme.CA, *, valid_for: timedelta) -> Iterator[int]:
    """A TLS server for ``localhost`` whose certificate expires ``valid_for`` from now."""
    cert = ca.issue_cert("localhost", not_after=datetime.now(UTC) + valid_for)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    class Handshake(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                with context.wrap_socket(self.request, server_side=True) as tls:
                    tls.recv(1)  # until the client hangs up
            except (ssl.SSLError, OSError):
                pass  # a client that refuses our certificate

    with serving(_TcpServer(("127.0.0.1", 0), Handshake)) as port:
        yield port


def probe(data: dict[str, Any]) -> Any:
    """A probe spec from config-shaped data, validated as the config file would be."""
    return TypeAdapter(ProbeSpec).validate_python(data)


def run(spec: Any, **environ: str) -> ProbeResult:
    return run_probe("probe", spec, ctx=ProbeContext(environ=environ))


def run_timed(spec: Any, **environ: str) -> tuple[ProbeResult, float]:
    """Run one probe through the concurrent runner; its result and the wall time taken."""
    started = time.monotonic()
    [result] = run_probes({"probe": spec}, ctx=ProbeContext(environ=environ))
    return result, time.monotonic() - started


# --- HTTP -------------------------------------------------------------------------------


def test_http_pass_shows_status_headers_and_body(web: str) -> None:
    result = run(HttpProbe(url=f"{web}/health", timeout=timedelta(seconds=5)))
    assert result.ok, result.summary
    assert result.summary.startswith("HTTP 200 in ") and result.summary.endswith(" ms")
    assert "200 OK" in result.detail
    assert "content-type: application/json" in result.detail
    assert '"status": "ok"' in result.detail


@pytest.mark.parametrize(
    ("fields", "ok", "summary"),
    [
        ({"path": "/down"}, False, "HTTP 503 (expected 200)"),
        ({"path": "/down", "expect_status": [200, 503]}, True, "HTTP 503 in"),
        ({"path": "/text", "body_contains": "ok"}, False, "body lacks 'ok'"),
        ({"path": "/text", "body_contains": "good"}, True, "HTTP 200 in"),
        ({"json_path": "checks.db", "json_value": "up"}, True, "HTTP 200 in"),
        ({"json_path": "checks.db", "json_value": "down"}, False, 'JSON checks.db is "up"'),
        ({"json_path": "checks.search"}, False, "JSON has no checks.search"),
        ({"json_path": "shards.1", "json_value": 2}, True, "HTTP 200 in"),
        ({"json_path": "ready", "json_value": True}, True, "HTTP 200 in"),
        ({"json_path": "ready", "json_value": 1}, False, "JSON ready is true (expected 1)"),
        ({"path": "/text", "json_path": "status"}, False, "body is not JSON"),
        ({"json_path": "error_rate", "condition": "result < 0.01"}, True, "HTTP 200 in"),
        (
            {"json_path": "error_rate", "condition": "result < 0.001"},
            False,
            "JSON error_rate: 0.004 < 0.001 ✗",
        ),
        ({"json_path": "shards.1", "condition": "result in [2, 3]"}, True, "HTTP 200 in"),
        (
            {"json_path": "shards.0", "condition": "result not in [1, 3]"},
            False,
            "JSON shards.0: 1 not in [1, 3] ✗",
        ),
        (
            {"json_path": "latency_ms", "condition": "result[1] <= 200"},
            False,
            "JSON latency_ms: 250 <= 200 ✗",
        ),
        (
            {"json_path": "latency_ms", "condition": "result[2] <= 200"},
            False,
            "JSON latency_ms: condition: no item 2 in 2 at column 1",
        ),
        (
            {"json_path": "checks.db", "condition": "result > 0"},
            False,
            'JSON checks.db is "up", not a number',
        ),
        ({"json_path": "ready", "condition": "result == 1"}, False, "JSON ready is true, not"),
        ({"json_path": "nope", "condition": "result == 1"}, False, "JSON has no nope"),
        ({"path": "/redirect"}, False, "HTTP 302 (expected 200)"),
        ({"path": "/redirect", "follow_redirects": True}, True, "HTTP 200 in"),
        ({"path": "/nowhere"}, False, "HTTP 404 (expected 200)"),
        ({"method": "HEAD"}, True, "HTTP 200 in"),
    ],
)
def test_http_conditions(web: str, fields: dict[str, Any], ok: bool, summary: str) -> None:
    fields = {"path": "/health", **fields}
    url = web + fields.pop("path")
    result = run(probe({"kind": "http", "url": url, "timeout": "5s", **fields}))
    assert (result.ok, result.summary[: len(summary)]) == (ok, summary)


def test_a_passing_http_condition_shows_the_value(web: str) -> None:
    spec = probe(
        {
            "kind": "http",
            "url": f"{web}/health",
            "json_path": "error_rate",
            "condition": "result < 0.01",
        }
    )
    result = run(spec)
    assert result.ok
    assert result.summary.endswith(" ms; error_rate: 0.004 < 0.01 ✓")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"condition": "result < 1"}, "condition needs json_path"),
        (
            {"json_path": "a", "json_value": 1, "condition": "result < 1"},
            "use json_value (equality) or condition, not both",
        ),
        (
            {"json_path": "a", "condition": "result <"},
            "expected a number, a name, 'abs(' or '(', found the end at column 9",
        ),
        (
            {"json_path": "a", "condition": "baseline < 1"},
            "unknown name 'baseline' (known: result) at column 1",
        ),
    ],
)
def test_bad_http_conditions_are_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        probe({"kind": "http", "url": "https://x", **fields})


def test_http_latency_over_limit_fails(web: str) -> None:
    result = run(probe({"kind": "http", "url": f"{web}/slow?ms=250", "max_latency": "100ms"}))
    assert not result.ok
    latency, limit = result.summary.removeprefix("latency ").split(" > ")
    assert int(latency.removesuffix(" ms")) >= 250 and limit == "100 ms"


def test_http_timeout_against_a_silent_server() -> None:
    with silent_peer() as port:
        spec = probe({"kind": "http", "url": f"http://127.0.0.1:{port}/", "timeout": "500ms"})
        result, elapsed = run_timed(spec)
    assert (result.ok, result.summary) == (False, "timed out after 0.5s")
    assert elapsed < 0.5 + MARGIN


def test_http_refused_connection_fails_clearly() -> None:
    result = run(probe({"kind": "http", "url": f"http://127.0.0.1:{closed_port()}/"}))
    assert not result.ok
    assert result.summary.startswith("cannot connect:") and "refused" in result.summary


def test_http_missing_header_variable_is_not_runnable(web: str) -> None:
    spec = probe({"kind": "http", "url": f"{web}/health", "headers_from_env": {"X-Key": "KEY"}})
    result = run(spec)
    assert (result.ok, result.summary) == (
        False,
        "not runnable: environment variable KEY is not set",
    )


def test_http_bad_url_is_not_runnable_or_refused_by_the_config() -> None:
    result = run(probe({"kind": "http", "url": "http://[::1/health"}))
    assert not result.ok and result.summary.startswith("not runnable: bad URL")
    with pytest.raises(ValidationError, match="is not an http"):
        probe({"kind": "http", "url": "ftp://example.test/"})


def test_http_verify_tls_against_a_private_ca(ca: trustme.CA) -> None:
    server = _Threading(("127.0.0.1", 0), HealthHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server) as port:
        url = f"https://127.0.0.1:{port}/health"
        strict = run(probe({"kind": "http", "url": url, "timeout": "5s"}))
        lax = run(probe({"kind": "http", "url": url, "timeout": "5s", "verify_tls": False}))
    assert not strict.ok and "CERTIFICATE_VERIFY_FAILED" in strict.summary
    assert lax.ok, lax.summary


# --- TCP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp() -> Iterator[int]:
    with serving(_TcpServer(("127.0.0.1", 0), BannerHandler)) as port:
        yield port


@pytest.fixture(scope="module")
def redis() -> Iterator[int]:
    with serving(_TcpServer(("127.0.0.1", 0), PingHandler)) as port:
        yield port


def test_tcp_banner(smtp: int) -> None:
    result = run(TcpProbe(host="127.0.0.1", port=smtp, expect_banner="220"))
    assert result.ok, result.summary
    assert result.summary.startswith("'220 mail ESMTP ready' in ")
    assert "220 mail ESMTP ready" in result.detail


def test_tcp_banner_mismatch(smtp: int) -> None:
    result = run(TcpProbe(host="127.0.0.1", port=smtp, expect_banner="+OK"))
    assert (result.ok, result.summary) == (False, "reply lacks '+OK': got '220 mail ESMTP ready'")


@pytest.mark.parametrize("send", ["PING", "PING\r\n"])
def test_tcp_ping_pong(redis: int, send: str) -> None:
    result = run(TcpProbe(host="127.0.0.1", port=redis, send=send, expect_banner="PONG"))
    assert result.ok, result.summary
    assert result.summary.startswith("'+PONG' in ")


def test_tcp_wrong_reply(redis: int) -> None:
    result = run(TcpProbe(host="127.0.0.1", port=redis, send="HELLO", expect_banner="PONG"))
    assert not result.ok
    assert result.summary == "reply lacks 'PONG': got '-ERR unknown command'"


def test_tcp_connect_only(redis: int) -> None:
    result = run(TcpProbe(host="127.0.0.1", port=redis))
    assert result.ok and result.summary.startswith("connected in ")


def test_tcp_refused() -> None:
    port = closed_port()
    result = run(TcpProbe(host="127.0.0.1", port=port))
    assert not result.ok
    assert result.summary == f"connecting to 127.0.0.1:{port} failed: Connection refused"


def test_tcp_timeout_waiting_for_the_banner() -> None:
    with silent_peer() as port:
        tcp = {"host": "127.0.0.1", "port": port, "expect_banner": "220", "timeout": "500ms"}
        result, elapsed = run_timed(probe({"kind": "tcp", **tcp}))
    assert (result.ok, result.summary) == (False, "timed out after 0.5s waiting for '220'")
    assert elapsed < 0.5 + MARGIN


def test_tcp_bad_configuration() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 65535"):
        probe({"kind": "tcp", "host": "127.0.0.1", "port": 70000})
    result = run(TcpProbe(host="no-such-host.invalid", port=25))
    assert not result.ok and result.summary.startswith("cannot resolve no-such-host.invalid")


# --- DNS --------------------------------------------------------------------------------


def _dns(nameserver: int, **fields: Any) -> Any:
    return probe({"kind": "dns", "nameserver": "127.0.0.1", "port": nameserver, **fields})


@pytest.mark.parametrize(
    ("fields", "ok", "summary"),
    [
        ({"record_type": "MX", "contains": "mail.example.test"}, True, "1 MX record in"),
        ({"record_type": "A"}, True, "1 A record in"),
        (
            {"record_type": "A", "contains": "10.0.0.9"},
            False,
            "1 A record, none contains '10.0.0.9'",
        ),
        ({"record_type": "TXT", "contains": "v=spf1"}, True, "1 TXT record in"),
        ({"record_type": "TXT", "contains": "V=SPF1"}, False, "1 TXT record, none contains"),
        ({"record_type": "AAAA"}, False, "no AAAA record for example.test"),
        ({"name": "nope.example.test"}, False, "NXDOMAIN: nope.example.test does not exist"),
    ],
)
def test_dns_answers(nameserver: int, fields: dict[str, Any], ok: bool, summary: str) -> None:
    result = run(_dns(nameserver, **{"name": "example.test", **fields}))
    assert (result.ok, result.summary[: len(summary)]) == (ok, summary)


def test_dns_detail_lists_the_answers(nameserver: int) -> None:
    result = run(_dns(nameserver, name="example.test", record_type="MX"))
    assert "10 mail.example.test." in result.detail
    assert result.summary.endswith(": 10 mail.example.test.")


def test_dns_timeout_against_a_silent_nameserver() -> None:
    with silent_peer(socket.SOCK_DGRAM) as port:
        result, elapsed = run_timed(_dns(port, name="example.test", timeout="500ms"))
    assert (result.ok, result.summary) == (False, f"timed out after 0.5s asking @127.0.0.1:{port}")
    assert elapsed < 0.5 + MARGIN


def test_dns_bad_nameserver_is_not_runnable() -> None:
    result = run(probe({"kind": "dns", "name": "example.test", "nameserver": "ns1.example"}))
    assert (result.ok, result.summary) == (
        False,
        "not runnable: nameserver 'ns1.example' is not an IP address",
    )


# --- TLS --------------------------------------------------------------------------------


def _tls(port: int, ca_file: str | None, **fields: Any) -> Any:
    data = {"kind": "tls", "host": "127.0.0.1", "port": port, "server_name": "localhost"}
    return probe({**data, "ca_file": ca_file, "timeout": "5s", **fields})


def test_tls_valid_for_90_days(ca: trustme.CA, ca_file: str) -> None:
    with tls_server(ca, valid_for=timedelta(days=90)) as port:
        result = run(_tls(port, ca_file, min_days=30))
    assert result.ok, result.summary
    assert result.summary.startswith("certificate valid for 89 more days (until ")
    assert "notAfter" in result.detail and "TLSv1.3" in result.detail


def test_tls_expiring_in_5_days_fails(ca: trustme.CA, ca_file: str) -> None:
    with tls_server(ca, valid_for=timedelta(days=5)) as port:
        result = run(_tls(port, ca_file, min_days=30))
    assert not result.ok
    assert result.summary.startswith("certificate expires in 4 days (")
    assert result.summary.endswith("), fewer than 30")


def test_tls_wrong_hostname_fails(ca: trustme.CA, ca_file: str) -> None:
    with tls_server(ca, valid_for=timedelta(days=90)) as port:
        result = run(_tls(port, ca_file, server_name="wrong.example"))
    assert not result.ok
    assert result.summary.startswith("certificate verification failed: Hostname mismatch")


def test_tls_untrusted_without_the_ca_file(ca: trustme.CA) -> None:
    with tls_server(ca, valid_for=timedelta(days=90)) as port:
        result = run(_tls(port, None))
    assert not result.ok
    assert result.summary == (
        "certificate verification failed: unable to get local issuer certificate"
    )


def test_tls_timeout_in_the_handshake() -> None:
    with silent_peer() as port:
        result, elapsed = run_timed(_tls(port, None, timeout="500ms"))
    assert (result.ok, result.summary) == (False, "timed out after 0.5s in the handshake")
    assert elapsed < 0.5 + MARGIN


def test_tls_missing_ca_file_is_not_runnable(tmp_path: Path) -> None:
    result = run(_tls(closed_port(), str(tmp_path / "ca.pem")))
    assert (result.ok, result.summary) == (
        False,
        f"not runnable: ca_file {tmp_path / 'ca.pem'} not found",
    )


# --- SQL --------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE deploys (id INTEGER PRIMARY KEY, version TEXT)")
        db.executemany("INSERT INTO deploys (version) VALUES (?)", [("1.0",), ("1.1",), ("1.2",)])
    return f"sqlite:///{path}"


def _sql(**fields: Any) -> Any:
    return probe({"kind": "sql", "url_env": "DB_URL", "timeout": "1s", **fields})


@pytest.mark.parametrize(
    ("fields", "ok", "summary"),
    [
        ({}, True, "returned 1 in "),
        ({"query": "SELECT count(*) FROM deploys", "expect": 3}, True, "returned 3 in "),
        ({"query": "SELECT count(*) FROM deploys", "expect": "3"}, True, "returned 3 in "),
        ({"query": "SELECT count(*) FROM deploys", "expect": 4}, False, "returned 3 (expected 4)"),
        ({"query": "SELECT max(version) FROM deploys", "expect": "1.2"}, True, "returned '1.2'"),
        ({"query": "SELECT id FROM deploys WHERE 0", "expect": 1}, False, "returned no rows"),
        ({"query": "SELECT * FROM nowhere"}, False, "query failed: no such table: nowhere"),
    ],
)
def test_sql_sqlite(sqlite_url: str, fields: dict[str, Any], ok: bool, summary: str) -> None:
    result = run(_sql(**fields), DB_URL=sqlite_url)
    assert (result.ok, result.summary[: len(summary)]) == (ok, summary)


def test_sql_is_read_only_and_rolled_back(sqlite_url: str) -> None:
    result = run(_sql(query="DELETE FROM deploys"), DB_URL=sqlite_url)
    assert not result.ok
    assert result.summary == "query failed: attempt to write a readonly database"
    path = sqlite_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT count(*) FROM deploys").fetchone() == (3,)


def test_sql_sqlite_timeout_on_a_locked_database(sqlite_url: str) -> None:
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        spec = _sql(query="SELECT count(*) FROM deploys", timeout="500ms")
        result, elapsed = run_timed(spec, DB_URL=sqlite_url)
    finally:
        holder.close()
    assert (result.ok, result.summary) == (False, "timed out after 0.5s: database is locked")
    assert elapsed < 0.5 + MARGIN


def test_sql_sqlite_runaway_query_is_interrupted(sqlite_url: str) -> None:
    forever = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"
    )
    result, elapsed = run_timed(_sql(query=forever, timeout="500ms"), DB_URL=sqlite_url)
    assert (result.ok, result.summary) == (False, "timed out after 0.5s: interrupted")
    assert elapsed < 0.5 + MARGIN


@pytest.mark.parametrize(
    ("environ", "summary"),
    [
        ({}, "not runnable: environment variable DB_URL is not set"),
        ({"DB_URL": "not a url"}, "not runnable: DB_URL is not a database URL"),
        ({"DB_URL": "nosuchdb://u:p@h/d"}, "not runnable: cannot use the URL in DB_URL"),
        ({"DB_URL": "sqlite:////nowhere/app.db"}, "not runnable: SQLite database /nowhere/app.db"),
    ],
)
def test_sql_bad_configuration(environ: dict[str, str], summary: str) -> None:
    result = run(_sql(), **environ)
    assert (result.ok, result.summary[: len(summary)]) == (False, summary)
    assert not Path("/nowhere/app.db").exists()


@pytest.fixture
def postgres_url() -> str:
    engine = create_engine(POSTGRES_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as error:
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}: {error.orig}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (PostgreSQL tests never skip in CI)", pytrace=False)
        pytest.skip(message)
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("fields", "ok", "summary"),
    [
        ({"expect": 1}, True, "returned 1 in "),
        ({"query": "SELECT 'ok'::text", "expect": "ok"}, True, "returned 'ok' in "),
        ({"query": "SELECT 2", "expect": 1}, False, "returned 2 (expected 1)"),
        (
            {"query": "CREATE TABLE probe_must_not_write (id int)"},
            False,
            "query failed: cannot execute CREATE TABLE in a read-only transaction",
        ),
        (
            {"query": "SELECT pg_sleep(10)"},
            False,
            "timed out after 1s: canceling statement due to statement timeout",
        ),
    ],
)
def test_sql_postgres(postgres_url: str, fields: dict[str, Any], ok: bool, summary: str) -> None:
    result, elapsed = run_timed(_sql(**fields), DB_URL=postgres_url)
    assert (result.ok, result.summary[: len(summary)]) == (ok, summary)
    assert elapsed < 1 + MARGIN


@pytest.mark.postgres
def test_sql_postgres_connect_timeout_and_password_redacted(postgres_url: str) -> None:
    # libpq's connect_timeout is whole seconds and at least 2: the probe's own floor.
    with silent_peer() as port:
        url = f"postgresql://deployer:pg-secret-pw@127.0.0.1:{port}/app"
        result, elapsed = run_timed(_sql(timeout="2s"), DB_URL=url)
    assert not result.ok and result.summary.startswith("timed out after 2s")
    assert elapsed < 2 + MARGIN
    assert "pg-secret-pw" not in result.summary + result.detail


# --- command ----------------------------------------------------------------------------


def _command(code: str, **fields: Any) -> Any:
    return probe({"kind": "command", "argv": [sys.executable, "-c", code], **fields})


@pytest.mark.parametrize(
    ("code", "fields", "ok", "summary"),
    [
        ("print('ready')", {}, True, "exit 0 in "),
        ("import sys; sys.exit(2)", {}, False, "exit 2 (expected 0)"),
        ("import sys; sys.exit(2)", {"expect_exit": 2}, True, "exit 2 in "),
        ("print('ready')", {"output_pattern": "^ready$"}, True, "exit 0 in "),
        (
            "print('starting')",
            {"output_pattern": "^ready$"},
            False,
            "output does not match /^ready$/",
        ),
        ("import sys; sys.stderr.write('warn: ok\\n')", {"output_pattern": "warn"}, True, "exit 0"),
    ],
)
def test_command(code: str, fields: dict[str, Any], ok: bool, summary: str) -> None:
    result = run(_command(code, **fields))
    assert (result.ok, result.summary[: len(summary)]) == (ok, summary)


def test_command_detail_shows_the_command_and_its_output() -> None:
    result = run(_command("print('migrations: 0 pending')"))
    assert result.detail.splitlines()[1:] == ["exit 0", "migrations: 0 pending"]
    assert result.detail.startswith(f"$ {sys.executable} -c ")


def test_command_output_is_redacted_before_it_is_cut() -> None:
    # A token whose first half falls just before the last 1,000 characters shown.
    body = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    # The command line holds the token reversed, so only the output can hold it as is.
    code = f"print('x' * 5000 + ' ghp_' + {body[::-1]!r}[::-1] + ' ' + 'y' * 990)"
    result = run(_command(code))
    assert body[-6:] not in result.detail
    assert result.detail.rstrip().endswith("] " + "y" * 990)


def test_command_sees_only_the_variables_it_names() -> None:
    code = "import os; print(sorted(os.environ)); print(os.environ['DEPLOY_TOKEN'])"
    spec = _command(code, env=["DEPLOY_TOKEN"])
    result = run(spec, DEPLOY_TOKEN="tok-visible-1234", OTHER_SECRET="hidden-5678", PATH="/usr/bin")
    assert result.ok, result.summary
    assert "'DEPLOY_TOKEN'" in result.detail
    assert "OTHER_SECRET" not in result.detail and "'PATH'" not in result.detail
    assert "tok-visible-1234" not in result.detail and "[REDACTED]" in result.detail


def test_command_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(30)\n"
    )
    result, elapsed = run_timed(_command(code, timeout="1s"))
    assert (result.ok, result.summary) == (False, "timed out after 1s")
    assert elapsed < 1 + MARGIN
    assert _gone(int(pid_file.read_text()), within=2.0)


def test_command_sleep_times_out() -> None:
    result, elapsed = run_timed(
        probe({"kind": "command", "argv": ["sleep", "30"], "timeout": "500ms"})
    )
    assert (result.ok, result.summary) == (False, "timed out after 0.5s")
    assert elapsed < 0.5 + MARGIN


@pytest.mark.parametrize(
    ("fields", "summary"),
    [
        (
            {"argv": ["/nonexistent/tool"]},
            "cannot run /nonexistent/tool: No such file or directory",
        ),
        ({"argv": ["true"], "env": ["UNSET_VAR"]}, "not runnable: environment variable UNSET_VAR"),
    ],
)
def test_command_bad_configuration(fields: dict[str, Any], summary: str) -> None:
    result = run(probe({"kind": "command", **fields}))
    assert (result.ok, result.summary[: len(summary)]) == (False, summary)


def test_command_config_refuses_a_bad_pattern_and_an_empty_argv() -> None:
    with pytest.raises(ValidationError, match="not a regular expression"):
        probe({"kind": "command", "argv": ["true"], "output_pattern": "("})
    with pytest.raises(ValidationError, match="at least 1 item"):
        probe({"kind": "command", "argv": []})


def _gone(pid: int, *, within: float) -> bool:
    """Whether ``pid`` dies within ``within`` seconds (a zombie awaiting its reaper is dead).

    SIGKILL is delivered asynchronously: on a loaded machine the process may take a moment.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]
        except (FileNotFoundError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


# --- the runner -------------------------------------------------------------------------


def test_runner_runs_probes_concurrently(web: str) -> None:
    spec = probe({"kind": "http", "url": f"{web}/slow?ms=300", "timeout": "5s"})
    started = time.monotonic()
    [single] = run_probes({"one": spec})
    serial_one = time.monotonic() - started
    started = time.monotonic()
    results = run_probes([(f"p{n}", spec) for n in range(40)], concurrency=32)
    total = time.monotonic() - started
    assert single.ok and all(r.ok for r in results), [r.summary for r in results if not r.ok]
    assert [r.name for r in results] == [f"p{n}" for n in range(40)]
    assert total < 0.5 * 40 * serial_one, (total, serial_one)


def test_runner_a_hung_probe_does_not_hold_the_others(web: str) -> None:
    landed: list[tuple[str, float]] = []
    started = time.monotonic()

    def on_result(result: ProbeResult) -> None:
        landed.append((result.name, time.monotonic() - started))

    with silent_peer() as port:
        probes: list[tuple[str, Any]] = [
            ("hung", probe({"kind": "http", "url": f"http://127.0.0.1:{port}/", "timeout": "1s"}))
        ]
        probes += [(f"fast{n}", probe({"kind": "http", "url": f"{web}/health"})) for n in range(5)]
        results = run_probes(probes, on_result=on_result)
    by_name = {r.name: r for r in results}
    assert [name for name, _ in landed][-1] == "hung"
    assert all(at < 1.0 for name, at in landed if name != "hung"), landed  # before its timeout
    assert (by_name["hung"].ok, by_name["hung"].summary) == (False, "timed out after 1s")
    assert all(by_name[f"fast{n}"].ok for n in range(5))
    assert landed[-1][1] < 1 + MARGIN
