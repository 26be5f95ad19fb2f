"""The prometheus probe against a real Prometheus (Debian's) scraping a test exporter.

The exporter (prometheus_client, on a loopback port of its own) serves gauges the tests set;
Prometheus scrapes it every second. Without the binary the tests skip, except in CI
(``CI=true``), where they fail: ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from pydantic import TypeAdapter

from bot.config.probe_specs import ProbeSpec
from bot.integrations.probes.base import ProbeContext, ProbeResult, run_probe

STARTUP_SECONDS = 20.0
METRIC = "deploybot_test_error_rate"


@dataclass
class Server:
    url: str
    gauge: Gauge

    def set(self, **values: float) -> None:
        """Set the gauge per ``job_kind`` and wait until Prometheus has scraped every value."""
        for kind, value in values.items():
            self.gauge.labels(job_kind=kind).set(value)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = self.query(METRIC)
            seen = {r["metric"]["job_kind"]: float(r["value"][1]) for r in found}
            if all(seen.get(kind) == value for kind, value in values.items()):
                return
            time.sleep(0.1)
        pytest.fail(f"Prometheus did not scrape {values} in 10s")

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must run the Prometheus tests")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = shutil.which("prometheus")
    if binary is None:
        _missing("Debian's prometheus is not installed (apt-get install prometheus)")
    assert binary is not None
    registry = CollectorRegistry()
    gauge = Gauge(METRIC, "An error rate the tests set.", ["job_kind"], registry=registry)
    exporter, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    folder = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: app\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter.server_port}']}}]\n"
    )
    port = _free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", gauge)
    try:
        _wait_until_up(server, process, folder / "prometheus.log")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        exporter.shutdown()
        exporter.server_close()


def _wait_until_up(server: Server, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if any(r["value"][1] == "1" for r in server.query('up{job="app"}')):
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the exporter was not up in Prometheus within {STARTUP_SECONDS:g}s")


def probe(server: Server, ctx: ProbeContext | None = None, **fields: Any) -> ProbeResult:
    spec = TypeAdapter(ProbeSpec).validate_python(
        {
            "kind": "prometheus",
            "url": server.url,
            "query": f'{METRIC}{{job_kind="api"}}',
            "condition": "result < 0.01",
            "description": "error rate",
        }
        | fields
    )
    return run_probe("error-rate", spec, ctx=ctx or ProbeContext(environ={}))


def test_a_value_that_meets_the_condition_passes(prometheus: Server) -> None:
    prometheus.set(api=0.004)
    result = probe(prometheus)
    assert (result.ok, result.summary) == (True, "error rate: 0.004 < 0.01 ✓")
    assert result.detail.splitlines()[-1] == "verdict: passed"


def test_a_value_that_does_not_fails(prometheus: Server) -> None:
    prometheus.set(api=0.5)
    result = probe(prometheus)
    assert (result.ok, result.summary) == (False, "error rate: 0.5 < 0.01 ✗")


def test_a_metric_that_does_not_exist_is_inconclusive(prometheus: Server) -> None:
    result = probe(prometheus, query="deploybot_no_such_metric", description=None)
    assert (result.ok, result.summary) == (False, "inconclusive: no data")


def test_nan_is_inconclusive(prometheus: Server) -> None:
    result = probe(prometheus, query="vector(0) / 0", description=None)
    assert (result.ok, result.summary) == (False, "inconclusive: NaN for {}")


def test_every_series_must_pass_and_the_failing_are_named(prometheus: Server) -> None:
    prometheus.set(api=0.004, worker=0.2)
    result = probe(prometheus, query=METRIC, description=None)
    assert not result.ok
    assert result.summary == (
        "1 of 2 series fail result < 0.01 ✗: "
        f'{METRIC}{{instance="{prometheus.query("up")[0]["metric"]["instance"]}", '
        'job="app", job_kind="worker"} = 0.2'
    )


def test_a_query_prometheus_refuses_is_a_clear_error(prometheus: Server) -> None:
    result = probe(prometheus, query="sum(rate(", description=None)
    assert not result.ok
    assert result.summary.startswith("error: Prometheus error (bad_data): ")


def test_a_range_is_reduced(prometheus: Server) -> None:
    prometheus.set(api=0.5)
    prometheus.set(api=0.004)  # scraped a second after 0.5: both are in the last 3s
    worst = probe(prometheus, window="3s", step="1s", reduce="max")
    assert (worst.ok, worst.summary) == (False, "error rate: 0.5 < 0.01 ✗")
    last = probe(prometheus, window="3s", step="1s", reduce="last")
    assert (last.ok, last.summary) == (True, "error rate: 0.004 < 0.01 ✓")


def test_repeated_measurements_are_each_listed(prometheus: Server) -> None:
    prometheus.set(api=0.004)
    slept: list[float] = []
    ctx = ProbeContext(environ={}, sleep=slept.append)
    result = probe(prometheus, ctx, count=3, interval="300ms", timeout="5s")
    assert slept == [0.3, 0.3]  # two intervals between three measurements
    assert result.ok
    assert result.summary == (
        "passed: 3 passed, 0 failed, 0 inconclusive of 3; last error rate: 0.004 < 0.01 ✓"
    )
    lines = result.detail.splitlines()
    assert [line.split(" ", 2)[2] for line in lines[3:6]] == [
        "passed: error rate: 0.004 < 0.01 ✓"
    ] * 3
    assert lines[-1] == "verdict: passed"


def test_a_failure_beyond_the_limit_stops_early(prometheus: Server) -> None:
    prometheus.set(api=0.5)
    ctx = ProbeContext(environ={}, sleep=lambda seconds: None)
    result = probe(prometheus, ctx, count=5, interval="300ms", failure_limit=1, timeout="5s")
    assert not result.ok
    assert result.summary.startswith("failed: 0 passed, 2 failed, 0 inconclusive of 5")
    assert len([line for line in result.detail.splitlines() if " failed: " in line]) == 2


COMPARISON = {
    "query": None,
    "baseline": f'{METRIC}{{job_kind="{{{{previous_version}}}}"}}',
    "canary": f'{METRIC}{{job_kind="{{{{version}}}}"}}',
    "condition": "canary <= baseline * 1.2",
    "description": "canary error rate",
}
SESSION = {"service": "api", "version": "canary", "previous_version": "stable"}


def test_a_canary_no_worse_than_its_baseline_passes(prometheus: Server) -> None:
    prometheus.set(stable=0.01, canary=0.011)
    result = probe(prometheus, ProbeContext(environ={}, template=SESSION), **COMPARISON)
    assert (result.ok, result.summary) == (
        True,
        "canary error rate: canary 0.011, baseline 0.01: 0.011 <= 0.01 * 1.2 ✓",
    )
    assert result.detail.splitlines()[:2] == [
        f'baseline: {METRIC}{{job_kind="stable"}}',
        f'canary: {METRIC}{{job_kind="canary"}}',
    ]


def test_a_canary_worse_than_its_baseline_fails(prometheus: Server) -> None:
    prometheus.set(stable=0.01, canary=0.05)
    result = probe(prometheus, ProbeContext(environ={}, template=SESSION), **COMPARISON)
    assert (result.ok, result.summary) == (
        False,
        "canary error rate: canary 0.05, baseline 0.01: 0.05 <= 0.01 * 1.2 ✗",
    )


def test_a_baseline_without_data_is_inconclusive(prometheus: Server) -> None:
    prometheus.set(canary=0.01)
    ctx = ProbeContext(environ={}, template=SESSION | {"previous_version": "never-deployed"})
    result = probe(prometheus, ctx, **COMPARISON)
    assert (result.ok, result.summary) == (
        False,
        "inconclusive: canary error rate: no data for the baseline",
    )


def test_a_comparison_of_many_series_is_an_error(prometheus: Server) -> None:
    prometheus.set(stable=0.01, canary=0.01)
    fields = COMPARISON | {"baseline": METRIC}
    result = probe(prometheus, ProbeContext(environ={}, template=SESSION), **fields)
    assert not result.ok
    assert result.summary.startswith("error: canary error rate: the baseline query returns ")


def test_a_comparison_needs_the_session_values(prometheus: Server) -> None:
    result = probe(prometheus, ProbeContext(environ={}, template={"version": "v2"}), **COMPARISON)
    assert (result.ok, result.runnable) == (False, False)
    assert result.summary == (
        "not runnable: baseline needs {{previous_version}}, which this session does not have"
    )
