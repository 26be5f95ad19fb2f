"""The datadog probe: Datadog's official client (its real code) against a loopback stand-in.

The stand-in answers ``GET /api/v1/query`` as Datadog documents it (a MetricsQueryResponse)
and refuses any request whose shape differs from what the client sends: the method, the
path, exactly the ``from``/``to``/``query`` parameters (epoch seconds, ``from`` < ``to``),
both key headers, JSON accepted, no body. Every refusal is recorded, and each test checks
that there was none it did not expect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import TypeAdapter

from bot.config.probe_specs import ProbeSpec
from bot.integrations.probes import ProbeContext, ProbeResult, run_probe
from tests.support.config_check import located_problems

KEYS = {"DD_API_KEY": "api-key-123", "DD_APP_KEY": "app-key-456"}


@dataclass
class StandIn:
    url: str
    series: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # query -> series
    status: int = 200
    seen: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _shape_problems(handler: BaseHTTPRequestHandler) -> tuple[list[str], dict[str, str]]:
    """What differs from the official client's request for MetricsApi.query_metrics."""
    url = urlsplit(handler.path)
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    problems = []
    if handler.command != "GET" or url.path != "/api/v1/query":
        problems.append(f"{handler.command} {url.path}")
    if set(params) != {"from", "to", "query"}:
        problems.append(f"parameters {sorted(params)}")
    elif not (params["from"].isdigit() and params["to"].isdigit()):
        problems.append("from/to are not epoch seconds")
    elif int(params["from"]) >= int(params["to"]):
        problems.append("from is not before to")
    if handler.headers.get("DD-API-KEY") != KEYS["DD_API_KEY"]:
        problems.append("DD-API-KEY")
    if handler.headers.get("DD-APPLICATION-KEY") != KEYS["DD_APP_KEY"]:
        problems.append("DD-APPLICATION-KEY")
    if "application/json" not in handler.headers.get("Accept", ""):
        problems.append("Accept")
    if not handler.headers.get("User-Agent", "").startswith("datadog-api-client-python/"):
        problems.append("User-Agent")
    if int(handler.headers.get("Content-Length") or 0):
        problems.append("a body")
    return problems, params


@pytest.fixture
def datadog() -> Iterator[StandIn]:
    stand_in = StandIn("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            problems, params = _shape_problems(self)
            stand_in.seen.append(params)
            if problems:
                stand_in.refused += problems
                self._answer(400, {"errors": [f"unexpected request: {problems}"]})
            elif stand_in.status != 200:
                self._answer(stand_in.status, {"errors": ["Error parsing query: bad"]})
            else:
                start, end = int(params["from"]), int(params["to"])
                self._answer(
                    200,
                    {
                        "status": "ok",
                        "res_type": "time_series",
                        "query": params["query"],
                        "from_date": start * 1000,
                        "to_date": end * 1000,
                        "series": stand_in.series.get(params["query"], []),
                    },
                )

        do_POST = do_GET

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()


def series(scope: str, *values: float | None) -> dict[str, Any]:
    points = [[1_700_000_000_000.0 + n * 60_000, v] for n, v in enumerate(values)]
    return {
        "metric": "trace.http.request.errors",
        "display_name": "trace.http.request.errors",
        "scope": scope,
        "expression": f"avg:trace.http.request.errors{{{scope}}}",
        "pointlist": points,
        "length": len(points),
        "interval": 60,
        "aggr": "avg",
        "start": 1_700_000_000_000,
        "end": 1_700_000_000_000 + len(points) * 60_000,
    }


QUERY = "avg:trace.http.request.errors{service:api}"


def probe(stand_in: StandIn, ctx: ProbeContext | None = None, **fields: Any) -> ProbeResult:
    spec = TypeAdapter(ProbeSpec).validate_python(
        {
            "kind": "datadog",
            "url": stand_in.url,
            "query": QUERY,
            "condition": "result < 0.01",
            "description": "error rate",
        }
        | fields
    )
    return run_probe("errors", spec, ctx=ctx or ProbeContext(environ=KEYS))


def test_a_value_under_the_threshold_passes(datadog: StandIn) -> None:
    datadog.series[QUERY] = [series("service:api", 0.002, None, 0.004)]
    result = probe(datadog, reduce="max")
    assert (result.ok, result.summary) == (True, "error rate: 0.004 < 0.01 ✓")
    assert datadog.refused == []
    [params] = datadog.seen
    assert params["query"] == QUERY
    assert int(params["to"]) - int(params["from"]) == 300  # the default window, 5m


def test_a_value_over_the_threshold_fails_and_every_series_counts(datadog: StandIn) -> None:
    datadog.series[QUERY] = [series("service:api,env:a", 0.001), series("service:api,env:b", 0.5)]
    result = probe(datadog)
    assert not result.ok
    assert result.summary == (
        "error rate: 1 of 2 series fail result < 0.01 ✗: "
        "trace.http.request.errors{service:api,env:b} = 0.5"
    )
    assert datadog.refused == []


def test_no_series_is_inconclusive(datadog: StandIn) -> None:
    result = probe(datadog)
    assert (result.ok, result.summary) == (False, "inconclusive: error rate: no data")


def test_a_refused_query_is_an_error(datadog: StandIn) -> None:
    datadog.status = 400
    result = probe(datadog)
    assert not result.ok
    assert result.summary == (
        'error: Datadog answered HTTP 400: {"errors": ["Error parsing query: bad"]}'
    )


def test_canary_and_baseline_are_compared_and_measured_again(datadog: StandIn) -> None:
    datadog.series["avg:errors{version:v1}"] = [series("version:v1", 0.01)]
    datadog.series["avg:errors{version:v2}"] = [series("version:v2", 0.05)]
    slept: list[float] = []
    ctx = ProbeContext(
        environ=KEYS, template={"version": "v2", "previous_version": "v1"}, sleep=slept.append
    )
    result = probe(
        datadog,
        ctx,
        query=None,
        baseline="avg:errors{version:{{previous_version}}}",
        canary="avg:errors{version:{{version}}}",
        condition="canary <= baseline * 1.2",
        count=3,
        interval="1m",
        timeout="4m",
        failure_limit=1,
    )
    assert not result.ok
    assert result.summary == (
        "failed: 0 passed, 2 failed, 0 inconclusive of 3; last error rate: "
        "canary 0.05, baseline 0.01: 0.05 <= 0.01 * 1.2 ✗"
    )
    assert slept == [60.0]
    assert [p["query"] for p in datadog.seen] == [
        "avg:errors{version:v1}",
        "avg:errors{version:v2}",
    ] * 2
    assert datadog.refused == []


def test_the_keys_come_from_the_environment(datadog: StandIn) -> None:
    unset = probe(datadog, ProbeContext(environ={"DD_API_KEY": "x"}))
    assert (unset.ok, unset.runnable) == (False, False)
    assert unset.summary == "not runnable: environment variable DD_APP_KEY is not set"
    wrong = probe(datadog, ProbeContext(environ=KEYS | {"DD_API_KEY": "wrong"}))
    assert not wrong.ok and "HTTP 400" in wrong.summary
    assert datadog.refused == ["DD-API-KEY"]  # the stand-in saw the key the client sent
    assert "wrong" not in wrong.summary + wrong.detail


def test_an_unreachable_site_is_an_error() -> None:
    result = probe(StandIn("http://127.0.0.1:9"), timeout="2s")
    assert not result.ok
    assert result.summary.startswith("error: Datadog: ")


CONFIG = """\
roles:
  deployers: [U0DEPLOY1]
probes:
  errors:
    kind: datadog
{extra}environments:
  prod:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    probes: [errors]
"""


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            "    condition: result < 1\n",
            "4: probes.errors: needs query, or both baseline and canary (a comparison)",
        ),
        (
            "    query: a\n    baseline: b\n    canary: c\n    condition: result < 1\n",
            "4: probes.errors: use query, or baseline and canary (a comparison), not both",
        ),
        (
            "    baseline: b\n    canary: c\n    condition: result < 1\n",
            "8: probes.errors.condition: unknown name 'result' (known: baseline, canary) "
            "at column 1",
        ),
        (
            "    query: a\n    condition: result < 1\n    api_key_env: dd-key\n",
            "8: probes.errors.api_key_env: 'dd-key' is not an environment variable name "
            "(use e.g. DATABASE_URL)",
        ),
    ],
)
def test_bad_config_is_located_at_config_check(tmp_path: Path, extra: str, problem: str) -> None:
    assert located_problems(tmp_path, CONFIG.format(extra=extra)) == [f"deploybot.yaml:{problem}"]
