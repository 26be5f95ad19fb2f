"""How HTTP probes scale through the runner: 1 probe, then 200 at concurrency 32.

A local threaded HTTP server answers every request after 200 ms. Serially 200 probes
would take 200 x the single probe's time; with 32 at a time they should take about
ceil(200 / 32) = 7 rounds. The 200 are run twice: once timed, once under tracemalloc
(which slows allocation-heavy code, so it does not share the timed run).

Run: ``cd /work/main && .venv/bin/python benchmarks/probes_http.py``
"""

from __future__ import annotations

import resource
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.config.probe_specs import HttpProbe
from bot.integrations.probes import run_probes

DELAY = 0.2
COUNT = 200
CONCURRENCY = 32


class SlowHealth(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(DELAY)
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default backlog of 5 would drop concurrent connects


def main() -> None:
    server = Server(("127.0.0.1", 0), SlowHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = HttpProbe(url=f"http://127.0.0.1:{server.server_address[1]}/health")
    probes = [(f"health-{n}", spec) for n in range(COUNT)]
    try:
        run_probes({"warm-up": spec})  # imports httpx and builds the TLS context once

        started = time.perf_counter()
        [single] = run_probes({"single": spec})
        one = time.perf_counter() - started

        started = time.perf_counter()
        results = run_probes(probes, concurrency=CONCURRENCY)
        total = time.perf_counter() - started

        tracemalloc.start()
        run_probes(probes, concurrency=CONCURRENCY)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        server.shutdown()
        server.server_close()

    passed = sum(r.ok for r in results)
    rounds = -(-COUNT // CONCURRENCY)
    print(f"server delay: {DELAY * 1000:.0f} ms per request")
    print(f"single probe: {one * 1000:.0f} ms ({single.summary})")
    print(f"{COUNT} probes at concurrency {CONCURRENCY}: {total:.2f} s ({passed} passed)")
    print(f"ratio total/single: {total / one:.1f} (serial would be {COUNT}, ideal {rounds})")
    print(f"speed-up over serial: {COUNT * one / total:.1f}x")
    print(f"tracemalloc peak during {COUNT} probes: {peak / 2**20:.1f} MiB")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"ru_maxrss: {maxrss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
