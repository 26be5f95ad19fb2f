"""Prometheus probe: a PromQL query, measured ``count`` times, judged as Argo Rollouts does.

Each measurement queries the HTTP API (``/api/v1/query``, or ``/api/v1/query_range`` over a
``window`` reduced per series) and judges every series against the condition: passed,
failed, or inconclusive (no data, NaN). A failed measurement beyond ``failure_limit`` fails
the probe at once, an inconclusive one beyond ``inconclusive_limit`` makes it inconclusive
(a failed outcome saying so); an error (Prometheus refused the query, the server cannot be
reached) ends it. Measurements wait ``interval`` apart in this thread: the config makes
``timeout`` cover them all.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bot.config.probe_specs import PrometheusProbe
from bot.domain.conditions import Condition, ConditionError, format_value, parse
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome

MARKS = {"passed": "✓", "failed": "✗", "inconclusive": "?", "error": "!"}
SHOWN_SERIES = 3  # failing series named in a summary; the detail names them all


class QueryError(Exception):
    """The query got no usable answer: Prometheus refused it, or the request failed."""


@dataclass(frozen=True)
class Series:
    labels: str  # as PromQL writes them: name{job="api"}
    value: float


@dataclass(frozen=True)
class Measurement:
    phase: str  # passed, failed, inconclusive, error
    text: str  # what was seen: "0.004 < 0.01 ✓", "no data", "Prometheus error (...)"
    at: datetime


def check(spec: PrometheusProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Take the measurements and give the verdict.

    Raises:
        ProbeConfigError: An auth variable is unset or malformed, or the URL is unusable.
    """
    condition = parse(spec.condition, names=("result",))
    headers, auth = _auth(spec, ctx)
    deadline = time.monotonic() + spec.timeout.total_seconds()
    measurements: list[Measurement] = []
    client = httpx.Client(headers=headers, auth=auth, verify=spec.verify_tls)
    with client:
        _sleep(spec.initial_delay, deadline)
        for n in range(spec.count):
            if n:
                _sleep(spec.interval, deadline)
            if time.monotonic() >= deadline:
                break
            measurements.append(measure(client, spec, condition, deadline))
            if verdict(spec, measurements) != "running":
                break
    return outcome(spec, measurements)


def measure(
    client: httpx.Client, spec: PrometheusProbe, condition: Condition, deadline: float
) -> Measurement:
    """One query, judged."""
    at = datetime.now(UTC)
    try:
        series = query(client, spec, timeout=max(0.1, deadline - time.monotonic()))
    except QueryError as error:
        return Measurement("error", str(error), at)
    try:
        phase, text = judge(condition, series, spec.description)
    except ConditionError as error:
        return Measurement("error", f"condition: {error}", at)
    return Measurement(phase, text, at)


def judge(condition: Condition, series: list[Series], label: str | None) -> tuple[str, str]:
    """The phase of one measurement and what it saw."""
    prefix = f"{label}: " if label else ""
    if not series:
        return "inconclusive", f"{prefix}no data"
    nan = [s.labels for s in series if math.isnan(s.value)]
    if nan:
        return "inconclusive", f"{prefix}NaN for {_names(nan)}"
    if condition.indexes:  # result[0]: one judgment over the list of all series' values
        values = {"result": [s.value for s in series]}
        phase = "passed" if condition.evaluate(values) else "failed"
        return phase, f"{prefix}{condition.show(values)} {MARKS[phase]}"
    failing = [s for s in series if not condition.evaluate({"result": s.value})]
    if len(series) == 1:
        phase = "failed" if failing else "passed"
        return phase, f"{prefix}{condition.show({'result': series[0].value})} {MARKS[phase]}"
    if not failing:
        return "passed", f"{prefix}{len(series)} series meet {condition.source} ✓"
    shown = _names([f"{s.labels} = {format_value(s.value)}" for s in failing])
    fail = f"{len(failing)} of {len(series)} series fail {condition.source} ✗"
    return "failed", f"{prefix}{fail}: {shown}"


def verdict(spec: PrometheusProbe, measurements: list[Measurement]) -> str:
    """``passed``, ``failed``, ``inconclusive`` or ``error``; ``running`` while more are due."""
    phases = [m.phase for m in measurements]
    if "error" in phases:
        return "error"
    if phases.count("failed") > spec.failure_limit:
        return "failed"
    if phases.count("inconclusive") > spec.inconclusive_limit:
        return "inconclusive"
    return "passed" if len(phases) >= spec.count else "running"


def outcome(spec: PrometheusProbe, measurements: list[Measurement]) -> ProbeOutcome:
    """The probe's outcome: the verdict in the summary, every measurement in the detail."""
    phase = verdict(spec, measurements)
    last = measurements[-1].text if measurements else "no measurement"
    if phase == "running":
        summary = f"timed out after {len(measurements)} of {spec.count} measurements; {last}"
    elif spec.count == 1:
        summary = last if phase in ("passed", "failed") else f"{phase}: {last}"
    else:
        counts = ", ".join(
            f"{sum(m.phase == p for m in measurements)} {p}"
            for p in ("passed", "failed", "inconclusive")
        )
        summary = f"{phase}: {counts} of {spec.count}; last {last}"
    lines = [f"query: {spec.query}", f"condition: {spec.condition}"]
    if spec.count > 1:
        lines.append(
            f"count {spec.count}, failure_limit {spec.failure_limit}, "
            f"inconclusive_limit {spec.inconclusive_limit}"
        )
    lines += [f"{n}. {m.at:%H:%M:%S} {m.phase}: {m.text}" for n, m in enumerate(measurements, 1)]
    lines.append(f"verdict: {'timed out' if phase == 'running' else phase}")
    return ProbeOutcome(phase == "passed", summary, "\n".join(lines))


def query(client: httpx.Client, spec: PrometheusProbe, *, timeout: float) -> list[Series]:
    """The series the query returns now, each as one value; sorted by their labels."""
    base = spec.url.rstrip("/")
    params: dict[str, str | float]
    if spec.window is None:
        path, params = "/api/v1/query", {"query": spec.query}
    else:
        end = time.time()
        step = spec.step or max(timedelta(seconds=1), spec.window / 30)
        path = "/api/v1/query_range"
        params = {
            "query": spec.query,
            "start": end - spec.window.total_seconds(),
            "end": end,
            "step": step.total_seconds(),
        }
    try:
        response = client.get(base + path, params=params, timeout=timeout)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        raise ProbeConfigError(f"bad URL {spec.url}: {error}") from None
    except httpx.TimeoutException:
        raise QueryError(f"timed out after {timeout:.3g}s") from None
    except httpx.ConnectError as error:
        raise QueryError(f"cannot connect to {base}: {error}") from None
    except httpx.HTTPError as error:
        raise QueryError(f"request failed: {error or type(error).__name__}") from None
    return series_of(response, spec.reduce)


def series_of(response: httpx.Response, reduce: str = "last") -> list[Series]:
    """Read an API answer: its series, each reduced to one value.

    Raises:
        QueryError: Prometheus said ``status: error``, or the answer is not its API's.
    """
    try:
        body: Any = response.json()
    except ValueError:
        raise QueryError(f"HTTP {response.status_code} from Prometheus, not JSON") from None
    if not isinstance(body, dict):
        raise QueryError(f"HTTP {response.status_code}: not a Prometheus API answer")
    if body.get("status") == "error":
        kind = body.get("errorType") or "error"
        raise QueryError(f"Prometheus error ({kind}): {body.get('error') or 'no message'}")
    data = body.get("data")
    if body.get("status") != "success" or not isinstance(data, dict):
        raise QueryError(f"HTTP {response.status_code}: not a Prometheus API answer")
    kind = data.get("resultType")
    result: Any = data.get("result")
    try:
        if kind == "scalar":
            return [Series("scalar", float(result[1]))]
        if kind == "vector":
            found = [Series(_labels(r["metric"]), float(r["value"][1])) for r in result]
        elif kind == "matrix":
            found = [
                Series(_labels(r["metric"]), _reduce([float(v[1]) for v in r["values"]], reduce))
                for r in result
            ]
        else:
            raise QueryError(f"the query returns a {kind}, not numbers")
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        raise QueryError("a malformed answer from Prometheus") from None
    return sorted(found, key=lambda s: s.labels)


def _reduce(values: list[float], how: str) -> float:
    real = [v for v in values if not math.isnan(v)]
    if not real:
        return math.nan
    if how == "avg":
        return sum(real) / len(real)
    if how == "max":
        return max(real)
    if how == "min":
        return min(real)
    return values[-1]


def _labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{pairs}}}" if pairs or not name else name


def _names(items: list[str]) -> str:
    more = len(items) - SHOWN_SERIES
    return "; ".join(items[:SHOWN_SERIES]) + (f" (and {more} more)" if more > 0 else "")


def _auth(spec: PrometheusProbe, ctx: ProbeContext) -> tuple[dict[str, str], Any]:
    if spec.bearer_token_env:
        return {"Authorization": f"Bearer {ctx.env(spec.bearer_token_env)}"}, None
    if spec.basic_auth_env:
        user, colon, password = ctx.env(spec.basic_auth_env).partition(":")
        if not colon:
            raise ProbeConfigError(f"{spec.basic_auth_env} must hold user:password")
        ctx.secrets.append(password)  # the pair is redacted already; the password alone too
        return {}, httpx.BasicAuth(user, password)
    return {}, None


def _sleep(duration: timedelta | None, deadline: float) -> None:
    if duration:
        time.sleep(max(0.0, min(duration.total_seconds(), deadline - time.monotonic())))
