"""The prometheus probe without a server: its config, reading API answers, judging, verdicts.

tests/test_prometheus_server.py runs it against a real Prometheus.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from bot.config.probe_specs import ProbeSpec, PrometheusProbe
from bot.domain.conditions import parse
from bot.integrations.probes.analysis import (
    Measurement,
    QueryError,
    Series,
    judge,
    outcome,
    verdict,
)
from bot.integrations.probes.base import ProbeContext, run_probe
from bot.integrations.probes.prometheus_check import series_of
from tests.support.config_check import located_problems

URL = "http://prometheus.example:9090"


def spec(**fields: Any) -> PrometheusProbe:
    probe = TypeAdapter(ProbeSpec).validate_python(
        {"kind": "prometheus", "url": URL, "query": "up", "condition": "result == 1"} | fields
    )
    assert isinstance(probe, PrometheusProbe)
    return probe


CONFIG = """\
roles:
  deployers: [U0DEPLOY1]
probes:
  error-rate:
    kind: prometheus
    url: http://prometheus:9090
    query: sum(rate(errors[5m]))
    condition: {condition}
{extra}environments:
  prod:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    probes: [error-rate]
"""


def problems(tmp_path: Path, condition: str, extra: str = "") -> list[str]:
    return located_problems(tmp_path, CONFIG.format(condition=condition, extra=extra))


def test_a_good_condition_passes_config_check(tmp_path: Path) -> None:
    assert problems(tmp_path, '"result < 0.01"') == []


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ('"result <"', "expected a number, a name, 'abs(' or '(', found the end at column 9"),
        ('"baseline > 1"', "unknown name 'baseline' (known: result) at column 1"),
        ("\"__import__('os')\"", 'unexpected character "\'" at column 12'),
        ('"result * 2"', "not a condition: compare it (e.g. 'result < 0.01') at column 1"),
    ],
)
def test_a_bad_condition_is_located_in_the_file(
    tmp_path: Path, condition: str, message: str
) -> None:
    found = problems(tmp_path, condition)
    assert len(found) == 1
    assert found[0].startswith("deploybot.yaml:8: probes.error-rate.condition: ")
    assert found[0].endswith(message)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("    count: 3\n", "4: probes.error-rate.interval: needed when count is above 1"),
        (
            "    count: 3\n    interval: 5s\n",
            "4: probes.error-rate: timeout 10s does not cover initial_delay + count x interval: "
            "make it at least 15s",
        ),
        (
            "    initial_delay: 10s\n",
            "4: probes.error-rate: timeout 10s does not cover initial_delay + count x interval: "
            "make it at least 11s",
        ),
        ("    reduce: avg\n", "9: probes.error-rate.reduce: needs window (a range query)"),
        ("    step: 1s\n", "9: probes.error-rate.step: needs window (a range query)"),
        (
            "    bearer_token_env: A\n    basic_auth_env: B\n",
            "4: probes.error-rate: use bearer_token_env or basic_auth_env, not both",
        ),
        (
            "    bearer_token_env: s3cret-value\n",
            "9: probes.error-rate.bearer_token_env: 's3cret-value' is not an environment "
            "variable name (use e.g. DATABASE_URL)",
        ),
    ],
)
def test_measurement_settings_are_checked(tmp_path: Path, extra: str, problem: str) -> None:
    assert problems(tmp_path, '"result < 0.01"', extra) == [f"deploybot.yaml:{problem}"]


def test_a_timeout_that_covers_the_measurements_is_accepted(tmp_path: Path) -> None:
    extra = "    count: 3\n    interval: 5s\n    initial_delay: 5s\n    timeout: 21s\n"
    assert problems(tmp_path, '"result < 0.01"', extra) == []


def answer(body: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode())


def vector(*series: tuple[dict[str, str], str]) -> dict[str, object]:
    result = [{"metric": labels, "value": [1700000000.0, value]} for labels, value in series]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_series_are_read_from_vectors_matrices_and_scalars() -> None:
    found = series_of(answer(vector(({"__name__": "up", "job": "b"}, "1"), ({"job": "a"}, "0"))))
    assert found == [Series('up{job="b"}', 1.0), Series('{job="a"}', 0.0)]  # by labels
    matrix = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[1, "1"], [2, "NaN"], [3, "4"]]}],
        },
    }
    assert [s.value for s in series_of(answer(matrix), "avg")] == [2.5]
    assert [s.value for s in series_of(answer(matrix), "max")] == [4.0]
    assert [s.value for s in series_of(answer(matrix), "min")] == [1.0]
    assert [s.value for s in series_of(answer(matrix), "last")] == [4.0]
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}}
    assert series_of(answer(scalar)) == [Series("scalar", 0.5)]
    assert math.isnan(series_of(answer(vector(({}, "NaN"))))[0].value)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            answer(
                {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"},
                400,
            ),
            "Prometheus error (bad_data): parse error at char 4",
        ),
        (httpx.Response(502, content=b"<html>bad gateway</html>"), "HTTP 502 from Prometheus"),
        (
            answer({"status": "success", "data": {"resultType": "string", "result": [1, "x"]}}),
            "the query returns a string, not numbers",
        ),
        (
            answer({"status": "success", "data": {"resultType": "vector", "result": [{}]}}),
            "a malformed answer from Prometheus",
        ),
        (answer([1, 2]), "HTTP 200: not a Prometheus API answer"),
    ],
)
def test_bad_answers_are_clear_errors(response: httpx.Response, message: str) -> None:
    with pytest.raises(QueryError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        series_of(response)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.sampled_from(["1", "NaN", "x"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["metric", "value", "values", "__name__", "a"]), inner)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["vector", "matrix", "scalar", "string", None]),
    JSON,
    st.sampled_from(["avg", "max", "min", "last"]),
)
def test_no_answer_breaks_the_reader(kind: str | None, result: object, reduce: str) -> None:
    body = {"status": "success", "data": {"resultType": kind, "result": result}}
    try:
        found = series_of(answer(body), reduce)
    except QueryError:
        return
    assert all(isinstance(s.value, float) and isinstance(s.labels, str) for s in found)


@pytest.mark.parametrize(
    ("condition", "series", "phase", "text"),
    [
        ("result < 0.01", [Series("{}", 0.004)], "passed", "error rate: 0.004 < 0.01 ✓"),
        ("result < 0.01", [Series("{}", 0.02)], "failed", "error rate: 0.02 < 0.01 ✗"),
        ("result < 0.01", [], "inconclusive", "error rate: no data"),
        (
            "result < 0.01",
            [Series('{job="a"}', math.nan)],
            "inconclusive",
            'error rate: NaN for {job="a"}',
        ),
        (
            "result < 0.01",
            [Series('{job="a"}', 0.001), Series('{job="b"}', 0.002)],
            "passed",
            "error rate: 2 series meet result < 0.01 ✓",
        ),
        (
            "result < 0.01",
            [Series('{job="a"}', 0.001), Series('{job="b"}', 0.5)],
            "failed",
            'error rate: 1 of 2 series fail result < 0.01 ✗: {job="b"} = 0.5',
        ),
        (
            "result[0] + result[1] < 1",
            [Series("a", 0.25), Series("b", 0.5)],
            "passed",
            "error rate: 0.25 + 0.5 < 1 ✓",
        ),
    ],
)
def test_a_measurement_is_judged(
    condition: str, series: list[Series], phase: str, text: str
) -> None:
    assert judge(parse(condition, names=("result",)), series, "error rate") == (phase, text)


def measured(*phases: str) -> list[Measurement]:
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    return [Measurement(p, f"seen {n}", at) for n, p in enumerate(phases, 1)]


@pytest.mark.parametrize(
    ("limits", "phases", "expected"),
    [
        ({}, ["passed"], "passed"),
        ({}, ["failed"], "failed"),
        ({}, ["inconclusive"], "inconclusive"),
        ({"count": 3}, ["passed", "passed"], "running"),
        ({"count": 3}, ["passed", "failed"], "failed"),
        ({"count": 3, "failure_limit": 1}, ["passed", "failed"], "running"),
        ({"count": 3, "failure_limit": 1}, ["failed", "passed", "passed"], "passed"),
        ({"count": 3, "failure_limit": 1}, ["failed", "failed"], "failed"),
        ({"count": 3, "inconclusive_limit": 1}, ["inconclusive", "passed", "passed"], "passed"),
        ({"count": 3, "inconclusive_limit": 1}, ["inconclusive", "inconclusive"], "inconclusive"),
        ({"count": 3, "failure_limit": 5}, ["passed", "error"], "error"),
    ],
)
def test_the_verdict_follows_argo_rollouts_limits(
    limits: dict[str, int], phases: list[str], expected: str
) -> None:
    extra: dict[str, object] = {"interval": "1s", "timeout": "10s"} if "count" in limits else {}
    assert verdict(spec(**limits, **extra), measured(*phases)) == expected


def test_the_outcome_lists_every_measurement() -> None:
    probe = spec(count=3, interval="1s", failure_limit=1)
    result = outcome(probe, {"result": "up"}, measured("failed", "passed", "passed"))
    assert result.ok
    assert result.summary == "passed: 2 passed, 1 failed, 0 inconclusive of 3; last seen 3"
    assert result.detail.splitlines() == [
        "query: up",
        "condition: result == 1",
        "count 3, failure_limit 1, inconclusive_limit 0",
        "1. 12:00:00 failed: seen 1",
        "2. 12:00:00 passed: seen 2",
        "3. 12:00:00 passed: seen 3",
        "verdict: passed",
    ]
    inconclusive = outcome(
        spec(), {"result": "up"}, [Measurement("inconclusive", "no data", datetime.now(UTC))]
    )
    assert (inconclusive.ok, inconclusive.summary) == (False, "inconclusive: no data")


def test_auth_comes_from_the_environment_and_is_redacted() -> None:
    probe = spec(url="http://127.0.0.1:9", bearer_token_env="PROM_TOKEN")
    unset = run_probe("m", probe, ctx=ProbeContext(environ={}))
    assert (unset.ok, unset.runnable) == (False, False)
    assert unset.summary == "not runnable: environment variable PROM_TOKEN is not set"
    basic = spec(url="http://127.0.0.1:9", basic_auth_env="PROM_AUTH")
    bad = run_probe("m", basic, ctx=ProbeContext(environ={"PROM_AUTH": "no-colon"}))
    assert bad.summary == "not runnable: PROM_AUTH must hold user:password"
    down = run_probe("m", probe, ctx=ProbeContext(environ={"PROM_TOKEN": "tok-123"}))
    assert not down.ok and down.summary.startswith("error: cannot connect to http://127.0.0.1:9")


@pytest.fixture
def recording_prometheus() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback stand-in answering every query with one series at 0.004; records headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **dict(self.headers.items())})
            body = json.dumps(vector(({"job": "api"}, "0.004"))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_credentials_are_sent(recording_prometheus: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = recording_prometheus
    ctx = ProbeContext(environ={"PROM_TOKEN": "tok-123", "PROM_AUTH": "bot:pa55"})
    bearer = run_probe("m", spec(url=url, bearer_token_env="PROM_TOKEN"), ctx=ctx)
    basic = run_probe("m", spec(url=url + "/", basic_auth_env="PROM_AUTH"), ctx=ctx)
    assert (bearer.ok, basic.ok) == (False, False)  # 0.004 == 1 does not hold
    assert bearer.summary == "0.004 == 1 ✗"
    zero = run_probe("m", spec(url=url, condition="result / 0 < 1"), ctx=ctx)
    assert zero.summary == "error: condition: division by zero at column 10"
    assert seen[0]["path"] == "/api/v1/query?query=up"
    assert seen[0]["Authorization"] == "Bearer tok-123"
    assert seen[1]["path"] == "/api/v1/query?query=up"
    assert seen[1]["Authorization"] == "Basic " + base64.b64encode(b"bot:pa55").decode()
