"""Metric probes as written in the config file: Prometheus, CloudWatch metrics and Datadog.

Each asks a metrics service for numbers and judges them with a condition
(:mod:`bot.domain.conditions`), ``count`` times ``interval`` apart as Argo Rollouts'
analysis does. A probe either measures one ``query`` (its condition reads ``result``) or
compares a ``canary`` query with a ``baseline`` query (its condition reads both, e.g.
``canary <= baseline * 1.2``). Queries, dimensions and ``dashboard_url`` may name the
session's ``{{service}}``, ``{{version}}``, ``{{previous_version}}`` and ``{{environment}}``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bot.config.fields import Duration, EnvVarName, ProbeBase, format_duration, http_url
from bot.domain.conditions import ConditionError
from bot.domain.conditions import parse as parse_condition

TEMPLATE_NAMES = ("service", "version", "previous_version", "environment")
"""What a query, a dimension or a dashboard link may name as ``{{name}}``."""

_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def template_names(text: str) -> list[str]:
    """The ``{{names}}`` a template uses, in order."""
    return [m.group(1) for m in _TEMPLATE.finditer(text)]


def fill_template(text: str, values: dict[str, str], *, quote: bool = False) -> str:
    """``text`` with each ``{{name}}`` replaced by its value (URL-quoted when ``quote``).

    Raises:
        KeyError: A name has no value (its message is the name).
    """
    from urllib.parse import quote as url_quote

    def value(match: re.Match[str]) -> str:
        found = values.get(match.group(1), "")
        if not found:
            raise KeyError(match.group(1))
        return url_quote(found, safe="") if quote else found

    return _TEMPLATE.sub(value, text)


def _template(value: str, names: tuple[str, ...] = TEMPLATE_NAMES) -> str:
    unknown = [name for name in template_names(value) if name not in names]
    if unknown:
        known = ", ".join(names)
        raise PydanticCustomError(
            "template", f"unknown template name '{{{{{unknown[0]}}}}}' (known: {known})"
        )
    return value


def _dashboard_template(value: str) -> str:
    return _template(value, (*TEMPLATE_NAMES, "query"))


Template = Annotated[str, Field(min_length=1), AfterValidator(_template)]


def result_condition(value: str) -> str:
    """A condition on one measured ``result`` (an HTTP probe's JSON value)."""
    try:
        parse_condition(value, names=("result",))
    except ConditionError as error:
        raise PydanticCustomError("condition", "{error}", {"error": str(error)}) from None
    return value


def dashboard_link(spec: MetricProbe, values: dict[str, str]) -> str | None:
    """The probe's ``dashboard_url`` with the session's values and its query filled in
    (URL-quoted); None without one, or when it names a value the session lacks."""
    if spec.dashboard_url is None:
        return None
    query = str(
        getattr(spec, "query", None) or getattr(spec, "canary", None) or getattr(spec, "metric", "")
    )
    try:
        filled = fill_template(query, values)
        return fill_template(spec.dashboard_url, values | {"query": filled}, quote=True)
    except KeyError:
        return None


class MetricProbe(ProbeBase):
    """What every metric probe has: repeated measurement and a dashboard link; each kind
    declares its ``condition`` after its queries, so that the condition's check knows them."""

    count: int = Field(default=1, ge=1, le=1000)
    interval: Duration | None = Field(default=None, validate_default=True)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    initial_delay: Duration | None = None
    dashboard_url: (
        Annotated[str, AfterValidator(http_url), AfterValidator(_dashboard_template)] | None
    ) = None

    @property
    def compares(self) -> bool:
        """Whether the probe compares a canary with a baseline (else it measures ``result``)."""
        return False

    @property
    def condition_names(self) -> tuple[str, ...]:
        return ("baseline", "canary") if self.compares else ("result",)

    @field_validator("condition", check_fields=False)
    @classmethod
    def _condition_parses(cls, value: str, info: ValidationInfo) -> str:
        compares = any(info.data.get(name) is not None for name in ("baseline", "canary"))
        try:
            parse_condition(value, names=("baseline", "canary") if compares else ("result",))
        except ConditionError as error:
            raise PydanticCustomError("condition", "{error}", {"error": str(error)}) from None
        return value

    @field_validator("interval")
    @classmethod
    def _needed_for_count(cls, value: timedelta | None, info: ValidationInfo) -> object:
        if value is None and info.data.get("count", 1) > 1:
            raise PydanticCustomError("interval", "needed when count is above 1")
        return value

    @model_validator(mode="after")
    def _timing(self) -> MetricProbe:
        delay = self.initial_delay or timedelta(0)
        needed = delay + self.count * (self.interval or timedelta(0))
        if self.timeout < needed or self.timeout <= delay:
            shown = format_duration(max(needed, delay + timedelta(seconds=1)))
            raise PydanticCustomError(
                "timeout",
                "timeout {timeout} does not cover initial_delay + count x interval: "
                "make it at least {needed}",
                {"timeout": format_duration(self.timeout), "needed": shown},
            )
        return self


class ComparingProbe(MetricProbe):
    """A metric probe with one ``query``, or a ``baseline`` and a ``canary`` query."""

    query: Template | None = None
    baseline: Template | None = None
    canary: Template | None = None
    condition: str

    @property
    def compares(self) -> bool:
        return self.baseline is not None or self.canary is not None

    @model_validator(mode="before")
    @classmethod
    def _query_or_comparison(cls, data: object) -> object:
        if isinstance(data, dict):
            has_query = data.get("query") is not None
            pair = [name for name in ("baseline", "canary") if data.get(name) is not None]
            if has_query and pair:
                raise PydanticCustomError(
                    "query", "use query, or baseline and canary (a comparison), not both"
                )
            if not has_query and len(pair) != 2:
                raise PydanticCustomError(
                    "query", "needs query, or both baseline and canary (a comparison)"
                )
        return data


class PrometheusProbe(ComparingProbe):
    """A PromQL query whose value meets ``condition``, measured ``count`` times (Argo-style).

    Without ``window``, an instant query (``/api/v1/query``); with it, a range query over the
    last ``window`` (``/api/v1/query_range``), each series reduced to one value by ``reduce``.
    Every series must meet the condition; no data and NaN are inconclusive. A comparison's
    ``baseline`` and ``canary`` queries must each return one series.
    """

    kind: Literal["prometheus"] = "prometheus"
    url: Annotated[str, AfterValidator(http_url)]
    window: Duration | None = None
    step: Duration | None = None
    reduce: Literal["avg", "max", "min", "last"] = "last"
    bearer_token_env: EnvVarName | None = None
    basic_auth_env: EnvVarName | None = None
    verify_tls: bool = True

    @field_validator("step", "reduce")
    @classmethod
    def _needs_window(cls, value: object, info: ValidationInfo) -> object:
        if "window" in info.data and info.data["window"] is None:  # set, and not invalid
            raise PydanticCustomError("window", "needs window (a range query)")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusProbe:
        if self.bearer_token_env and self.basic_auth_env:
            raise PydanticCustomError("auth", "use bearer_token_env or basic_auth_env, not both")
        return self


_STATISTIC = re.compile(
    r"SampleCount|Average|Sum|Minimum|Maximum|(?:p|tm|wm|tc|ts)\d{1,2}(?:\.\d+)?"
)


def _statistic(value: str) -> str:
    if not _STATISTIC.fullmatch(value):
        raise PydanticCustomError(
            "statistic",
            "'{value}' is not a CloudWatch statistic (Average, Sum, Minimum, Maximum, "
            "SampleCount, or a percentile such as p99)",
            {"value": value},
        )
    return value


class CloudWatchMetricProbe(MetricProbe):
    """A CloudWatch metric (``GetMetricData``) over the last ``window``, judged as ``result``.

    The metric's datapoints (one per ``period``) are reduced to one value by ``reduce``; no
    datapoint in the window is inconclusive.
    """

    kind: Literal["cloudwatch_metric"] = "cloudwatch_metric"
    namespace: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    dimensions: dict[str, Template] = Field(default_factory=dict, max_length=30)
    statistic: Annotated[str, AfterValidator(_statistic)] = "Average"
    period: Duration = timedelta(minutes=1)
    window: Duration = timedelta(minutes=5)
    reduce: Literal["avg", "max", "min", "last"] = "avg"
    region: str | None = None
    condition: str

    @model_validator(mode="after")
    def _period_fits(self) -> CloudWatchMetricProbe:
        seconds = self.period.total_seconds()
        if seconds not in (1, 5, 10, 30) and seconds % 60:
            raise PydanticCustomError(
                "period", "period must be 1s, 5s, 10s, 30s or a multiple of 1m (CloudWatch's rule)"
            )
        if self.window < self.period:
            raise PydanticCustomError("window", "window must be at least one period")
        return self


class DatadogProbe(ComparingProbe):
    """A Datadog metrics query (``/api/v1/query``) over the last ``window``, per series.

    Each series' points are reduced to one value by ``reduce``; every series must meet the
    condition; no series is inconclusive. Keys come from ``api_key_env``/``app_key_env``.
    """

    kind: Literal["datadog"] = "datadog"
    site: str = "datadoghq.com"
    url: Annotated[str, AfterValidator(http_url)] | None = None
    api_key_env: EnvVarName = "DD_API_KEY"
    app_key_env: EnvVarName = "DD_APP_KEY"
    window: Duration = timedelta(minutes=5)
    reduce: Literal["avg", "max", "min", "last"] = "avg"


AnyMetricProbe = PrometheusProbe | CloudWatchMetricProbe | DatadogProbe
"""Every metric probe kind (each declares ``condition``)."""
