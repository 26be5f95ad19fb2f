"""How repeated metric measurements scale: 50 Prometheus probes of ``count: 5, interval: 1s``.

A real Prometheus (Debian's package) scrapes itself every second; each probe queries
``up{job="self"}`` five times, a second apart. One probe takes about 4 s (four intervals
between five measurements); serially 50 would take 50 times that, but the runner runs them
together: at concurrency 32 (the old pool) in two waves, about two probes' time; at the
default (256, so all 50 at once), in one wave, about one probe's time. All 50 query one
Prometheus, 16 at a time at most (``DEPLOYBOT_PROBE_PER_HOST``): a probe holds that slot
only while a query is in flight, not while it waits for its next measurement, so the bound
costs no wave. Prints the wall times; asserts nothing.

Run: ``.venv/bin/python benchmarks/metric_probes.py``
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import TypeAdapter

from bot.config.probe_specs import ProbeSpec
from bot.integrations.probes import run_probe, run_probes
from bot.integrations.probes.base import MAX_CONCURRENCY

COUNT = 50
CONCURRENCIES = (32, MAX_CONCURRENCY)  # the old pool (two waves), and the default


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    if binary is None:
        sys.exit("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - {{job_name: self, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}\n"
    )
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/api/v1/query", params={"query": 'up{job="self"}'})
            if answer.json()["data"]["result"]:
                return process, url
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    process.terminate()
    sys.exit("Prometheus did not scrape itself within 30 s")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        process, url = start(Path(folder))
        try:
            spec = TypeAdapter(ProbeSpec).validate_python(
                {
                    "kind": "prometheus",
                    "url": url,
                    "query": 'up{job="self"}',
                    "condition": "result == 1",
                    "count": 5,
                    "interval": "1s",
                    "timeout": "10s",
                }
            )
            started = time.monotonic()
            one = run_probe("one", spec)
            single = time.monotonic() - started
            print(f"1 probe (count 5, interval 1s): {single:.2f}s, {one.summary}")
            for concurrency in CONCURRENCIES:
                started = time.monotonic()
                probes = [(f"p{n}", spec) for n in range(COUNT)]
                results = run_probes(probes, concurrency=concurrency)
                many = time.monotonic() - started
                passed = sum(r.ok for r in results)
                print(
                    f"{COUNT} probes at concurrency {concurrency}: {many:.2f}s "
                    f"({many / single:.2f}x one probe; serially ~{single * COUNT:.0f}s), "
                    f"{passed}/{COUNT} passed"
                )
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
