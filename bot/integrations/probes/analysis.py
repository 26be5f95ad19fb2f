"""Metric analysis shared by the metric probes: measure ``count`` times, judge, give a verdict.

A kind supplies ``fetch(query) -> list[Series]`` (raising :class:`QueryError` when the
service gives no usable answer); this module fills the session's values into the queries,
takes the measurements ``interval`` apart (through ``ctx.sleep``), judges each one against
the condition (passed, failed, or inconclusive for no data and NaN), and decides as Argo
Rollouts does: a failed measurement beyond ``failure_limit`` fails the probe at once, an
inconclusive one beyond ``inconclusive_limit`` makes it inconclusive (a failed outcome
saying so), an error ends it. The summary shows the value, the condition and the verdict
(``error rate: 0.004 < 0.01 ✓``); the detail lists every measurement.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.config.metric_specs import AnyMetricProbe, fill_template
from bot.domain.conditions import Condition, ConditionError, format_value, parse
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome

MARKS = {"passed": "✓", "failed": "✗", "inconclusive": "?", "error": "!"}
SHOWN_SERIES = 3  # failing series named in a summary; the detail names them all


class QueryError(Exception):
    """The query got no usable answer: the service refused it, or the request failed."""


@dataclass(frozen=True)
class Series:
    labels: str  # as the service names it: name{job="api"}
    value: float


@dataclass(frozen=True)
class Measurement:
    phase: str  # passed, failed, inconclusive, error
    text: str  # what was seen: "0.004 < 0.01 ✓", "no data", "Prometheus error (...)"
    at: datetime


Fetch = Callable[[str, float], list[Series]]
"""A kind's query: the series a query returns now, given the seconds left."""


def queries(spec: AnyMetricProbe, ctx: ProbeContext, texts: dict[str, str]) -> dict[str, str]:
    """The probe's queries with the session's values filled in.

    Raises:
        ProbeConfigError: A query names a value the session does not have (no previous
            version yet, a session without a service).
    """
    filled = {}
    for name, text in texts.items():
        try:
            filled[name] = fill_template(text, dict(ctx.template))
        except KeyError as missing:
            raise ProbeConfigError(
                f"{name} needs {{{{{missing.args[0]}}}}}, which this session does not have"
            ) from None
    return filled


def analyse(
    spec: AnyMetricProbe, ctx: ProbeContext, fetch: Fetch, texts: dict[str, str]
) -> ProbeOutcome:
    """Take the measurements of ``texts`` (``{"result": q}`` or a baseline and a canary).

    Raises:
        ProbeConfigError: A query names a value the session does not have.
    """
    filled = queries(spec, ctx, texts)
    condition = parse(spec.condition, names=spec.condition_names)
    deadline = time.monotonic() + spec.timeout.total_seconds()
    measurements: list[Measurement] = []
    _sleep(ctx, spec.initial_delay, deadline)
    for n in range(spec.count):
        if n:
            _sleep(ctx, spec.interval, deadline)
        if time.monotonic() >= deadline:
            break
        measurements.append(measure(fetch, filled, condition, spec.description, deadline))
        if verdict(spec, measurements) != "running":
            break
    return outcome(spec, filled, measurements)


def measure(
    fetch: Fetch,
    filled: dict[str, str],
    condition: Condition,
    label: str | None,
    deadline: float,
) -> Measurement:
    """One measurement: each query once, judged."""
    at = datetime.now(UTC)
    found: dict[str, list[Series]] = {}
    try:
        for name, text in filled.items():
            found[name] = fetch(text, max(0.1, deadline - time.monotonic()))
    except QueryError as error:
        return Measurement("error", str(error), at)
    try:
        if "result" in found:
            phase, text = judge(condition, found["result"], label)
        else:
            phase, text = compare(condition, found, label)
    except ConditionError as error:
        return Measurement("error", f"condition: {error}", at)
    return Measurement(phase, text, at)


def judge(condition: Condition, series: list[Series], label: str | None) -> tuple[str, str]:
    """The phase of one measurement of ``result`` and what it saw."""
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


def compare(
    condition: Condition, found: dict[str, list[Series]], label: str | None
) -> tuple[str, str]:
    """The phase of one canary-versus-baseline measurement and what it saw."""
    prefix = f"{label}: " if label else ""
    values: dict[str, float] = {}
    for name in ("canary", "baseline"):
        series = found[name]
        if not series:
            return "inconclusive", f"{prefix}no data for the {name}"
        if len(series) > 1:
            shown = _names([s.labels for s in series])
            return "error", f"{prefix}the {name} query returns {len(series)} series: {shown}"
        if math.isnan(series[0].value):
            return "inconclusive", f"{prefix}NaN for the {name}"
        values[name] = series[0].value
    phase = "passed" if condition.evaluate(values) else "failed"
    seen = ", ".join(f"{name} {format_value(value)}" for name, value in values.items())
    return phase, f"{prefix}{seen}: {condition.show(values)} {MARKS[phase]}"


def verdict(spec: AnyMetricProbe, measurements: list[Measurement]) -> str:
    """``passed``, ``failed``, ``inconclusive`` or ``error``; ``running`` while more are due."""
    phases = [m.phase for m in measurements]
    if "error" in phases:
        return "error"
    if phases.count("failed") > spec.failure_limit:
        return "failed"
    if phases.count("inconclusive") > spec.inconclusive_limit:
        return "inconclusive"
    return "passed" if len(phases) >= spec.count else "running"


def outcome(
    spec: AnyMetricProbe, filled: dict[str, str], measurements: list[Measurement]
) -> ProbeOutcome:
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
    lines = [f"{'query' if name == 'result' else name}: {text}" for name, text in filled.items()]
    lines.append(f"condition: {spec.condition}")
    if spec.count > 1:
        lines.append(
            f"count {spec.count}, failure_limit {spec.failure_limit}, "
            f"inconclusive_limit {spec.inconclusive_limit}"
        )
    lines += [f"{n}. {m.at:%H:%M:%S} {m.phase}: {m.text}" for n, m in enumerate(measurements, 1)]
    lines.append(f"verdict: {'timed out' if phase == 'running' else phase}")
    return ProbeOutcome(phase == "passed", summary, "\n".join(lines))


_MEASUREMENT = re.compile(r"\d+\. (\d\d:\d\d:\d\d) (passed|failed|inconclusive|error): (.*)")
_QUERY_KEYS = ("query", "baseline", "canary")


@dataclass(frozen=True)
class Analysis:
    """A metric probe's detail read back (as stored, so perhaps cut short at its end)."""

    queries: dict[str, str]
    condition: str
    measurements: list[tuple[str, str, str]]  # (time, phase, what was seen)
    verdict: str | None  # None when the stored detail was cut before it


def analysis_of(detail: str) -> Analysis | None:
    """Read a metric probe's detail (as :func:`outcome` writes it); None for any other."""
    lines = detail.splitlines()
    if not lines or lines[0].partition(": ")[0] not in _QUERY_KEYS:
        return None
    queries: dict[str, str] = {}
    condition, verdict = None, None
    measurements = []
    for line in lines:
        key, _, rest = line.partition(": ")
        if key in _QUERY_KEYS and condition is None:
            queries[key] = rest
        elif key == "condition" and condition is None:
            condition = rest
        elif key == "verdict":
            verdict = rest
        elif match := _MEASUREMENT.fullmatch(line):
            measurements.append((match[1], match[2], match[3]))
    if condition is None:
        return None
    return Analysis(queries, condition, measurements, verdict)


def page_details(detail: str, limit: int = 1000) -> dict[str, str]:
    """What a page's ``custom_details`` add for a metric probe: the queries, the condition,
    the verdict and the measurements (the latest that fit in ``limit`` characters)."""
    analysis = analysis_of(detail)
    if analysis is None:
        return {}
    details = dict(analysis.queries) | {"condition": analysis.condition}
    if analysis.verdict:
        details["verdict"] = analysis.verdict
    lines: list[str] = []
    for at, phase, seen in reversed(analysis.measurements):
        line = f"{at} {phase}: {seen}"
        if sum(len(x) + 1 for x in lines) + len(line) > limit:
            break
        lines.insert(0, line)
    if lines:
        details["measurements"] = "\n".join(lines)
        details["last_measurement"] = lines[-1]
    return details


def reduce(values: list[float], how: str) -> float:
    """Several values of one series as one: ``avg``, ``max``, ``min`` or ``last``."""
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


def _names(items: list[str]) -> str:
    more = len(items) - SHOWN_SERIES
    return "; ".join(items[:SHOWN_SERIES]) + (f" (and {more} more)" if more > 0 else "")


def _sleep(ctx: ProbeContext, duration: timedelta | None, deadline: float) -> None:
    if duration:
        ctx.sleep(max(0.0, min(duration.total_seconds(), deadline - time.monotonic())))
