"""CloudWatch metric probe: ``GetMetricData`` over the last ``window``, measured ``count`` times.

Each measurement asks for the metric's ``statistic`` per ``period`` over the last ``window``
and reduces the datapoints to one value (``reduce``); no datapoint is inconclusive. The
judging, repetition and verdict are :mod:`.analysis`'s; credentials, region and endpoint
come from the standard AWS sources as for the ``aws`` probes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.config.metric_specs import fill_template
from bot.config.probe_specs import CloudWatchMetricProbe
from bot.integrations.probes.analysis import QueryError, Series, analyse, reduce
from bot.integrations.probes.aws_check import _client
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome


def check(spec: CloudWatchMetricProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Take the measurements and give the verdict.

    Raises:
        ProbeConfigError: A dimension names a value the session does not have.
    """
    dimensions = []
    for name, value in spec.dimensions.items():
        try:
            dimensions.append({"Name": name, "Value": fill_template(value, dict(ctx.template))})
        except KeyError as missing:
            raise ProbeConfigError(
                f"dimension {name} needs {{{{{missing.args[0]}}}}}, "
                "which this session does not have"
            ) from None
    shown = describe(spec, dimensions)
    # The aws probes' client: the same credentials, region rules and bounded retries.
    client = _client("cloudwatch", spec, ctx)

    def fetch(_query: str, timeout: float) -> list[Series]:
        return measure(client, spec, dimensions, shown)

    return analyse(spec, ctx, fetch, {"result": shown})


def describe(spec: CloudWatchMetricProbe, dimensions: list[dict[str, str]]) -> str:
    """The metric as a person reads it: ``AWS/ApplicationELB HTTPCode_5XX{LoadBalancer=x} Sum``."""
    pairs = ", ".join(f"{d['Name']}={d['Value']}" for d in dimensions)
    return f"{spec.namespace} {spec.metric}{{{pairs}}} {spec.statistic} per {_period(spec)}"


def measure(
    client: Any, spec: CloudWatchMetricProbe, dimensions: list[dict[str, str]], shown: str
) -> list[Series]:
    """The metric's datapoints in the window, reduced to one series (none when no data).

    Raises:
        QueryError: AWS refused the call or could not be reached.
    """
    end = datetime.now(UTC)
    stat: dict[str, Any] = {
        "Metric": {"Namespace": spec.namespace, "MetricName": spec.metric},
        "Period": int(spec.period.total_seconds()),
        "Stat": spec.statistic,
    }
    if dimensions:
        stat["Metric"]["Dimensions"] = dimensions
    try:
        pages = client.get_paginator("get_metric_data").paginate(
            MetricDataQueries=[{"Id": "m", "MetricStat": stat, "ReturnData": True}],
            StartTime=end - spec.window,
            EndTime=end,
            ScanBy="TimestampAscending",
        )
        points: list[tuple[datetime, float]] = []
        for page in pages:
            for result in page.get("MetricDataResults", []):
                points += zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
    except ClientError as error:
        details = error.response.get("Error", {})
        code, message = details.get("Code", "Unknown"), details.get("Message", "")
        raise QueryError(f"GetMetricData failed ({code}): {message}") from None
    except BotoCoreError as error:
        raise QueryError(f"CloudWatch: {error}") from None
    if not points:
        return []
    values = [value for _, value in sorted(points, key=lambda p: p[0])]
    return [Series(shown, reduce(values, spec.reduce))]


def _period(spec: CloudWatchMetricProbe) -> str:
    seconds = int(spec.period.total_seconds())
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
