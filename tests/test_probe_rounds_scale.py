"""Probe rounds at scale: a bound per target, file descriptors, what the shared client keeps.

Real HTTP servers on loopback (ports chosen by the OS); the 1,000-probe round runs in a
child process whose open-file limit is lowered to 256.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from bot.integrations.probes import ProbeContext, run_probes
from bot.integrations.probes.clients import ProbeClients, target_of, target_of_url
from tests.test_probes_network import http_server, probe


class Counting(BaseHTTPRequestHandler):
    """Answers after ``delay`` seconds; counts the requests in flight and their headers."""

    delay = 0.0
    lock = threading.Lock()
    now = 0
    most = 0
    cookies: list[str | None] = []

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.now += 1
            cls.most = max(cls.most, cls.now)
            cls.cookies.append(self.headers.get("Cookie"))
        time.sleep(cls.delay)
        with cls.lock:  # before answering: the client may send its next request at once
            cls.now -= 1
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "session=abc; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def counting(delay: float) -> type[Counting]:
    return type("Handler", (Counting,), {"delay": delay, "now": 0, "most": 0, "cookies": []})


def test_one_target_sees_at_most_per_host_checks_and_waiting_is_not_a_timeout() -> None:
    handler = counting(0.3)
    with http_server(handler) as web:
        spec = probe({"kind": "http", "url": f"{web}/health", "timeout": "1s"})
        ctx = ProbeContext(clients=ProbeClients(per_host=2))
        # 10 checks, 2 at a time, 0.3 s each: the last ones wait 1.2 s, past their 1 s timeout.
        results = run_probes([(f"p{n}", spec) for n in range(10)], ctx=ctx)
        ctx.shared.close()
    assert all(r.ok for r in results), [r.summary for r in results if not r.ok]
    assert len(handler.cookies) == 10
    assert handler.most <= 2


def test_probes_share_no_cookies() -> None:
    handler = counting(0.0)
    clients = ProbeClients()
    with http_server(handler) as web:
        spec = probe({"kind": "http", "url": f"{web}/health"})
        for _ in range(2):  # two rounds on the same client: the second is sent no cookie
            [result] = run_probes({"p": spec}, ctx=ProbeContext(clients=clients))
            assert result.ok, result.summary
        clients.close()
    assert handler.cookies == [None, None]


def test_targets_are_host_and_port() -> None:
    assert target_of_url("https://API.example.com/health") == "api.example.com:443"
    assert target_of_url("http://127.0.0.1:8080/x") == "127.0.0.1:8080"
    assert target_of(probe({"kind": "tcp", "host": "Mail", "port": 25})) == "mail:25"
    assert target_of(probe({"kind": "dns", "name": "example.com"})) == "dns:system"
    assert target_of(probe({"kind": "command", "argv": ["true"]})) is None


ROUND = """
import json, resource, sys
from bot.config.probe_specs import HttpProbe
from bot.integrations.probes import ProbeContext, run_probes
from bot.integrations.probes.clients import ProbeClients

resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
spec = HttpProbe(url=sys.argv[1] + "/health", timeout="20s")
# No bound per target: the open-file limit alone must keep the round within its means.
ctx = ProbeContext(clients=ProbeClients(per_host=10_000))
results = run_probes([(f"p{n}", spec) for n in range(int(sys.argv[2]))], ctx=ctx)
failed = [r.summary for r in results if not r.ok]
print(json.dumps({"passed": len(results) - len(failed), "failed": failed[:3]}))
"""


def test_a_round_of_1000_http_checks_fits_in_256_file_descriptors() -> None:
    # Each answer takes 0.3 s, so that hundreds of connections are open at once.
    with http_server(counting(0.3)) as web:
        done = subprocess.run(
            [sys.executable, "-c", ROUND, web, "1000"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"passed": 1000, "failed": []}


def test_kept_threads_take_the_next_rounds_checks_and_end_when_closed() -> None:
    clients = ProbeClients()
    with http_server(counting(0.0)) as web:
        spec = probe({"kind": "http", "url": f"{web}/health"})
        ctx = ProbeContext(clients=clients)
        for _ in range(3):
            assert all(r.ok for r in run_probes([(f"p{n}", spec) for n in range(5)], ctx=ctx))
        started = clients.threads.started
        clients.close()
        [after] = run_probes({"after": spec}, ctx=ctx)  # a closed one still runs checks
    assert after.ok, after.summary
    assert started <= 5  # the later rounds reused the first round's threads
