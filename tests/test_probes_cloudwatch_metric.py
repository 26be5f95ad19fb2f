"""The cloudwatch_metric probe against moto's threaded server: put_metric_data, then the probe.

Each test writes its own namespace (moto keeps metrics for the module's server), so tests
do not see each other's datapoints.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from pydantic import TypeAdapter

from bot.config.probe_specs import ProbeSpec
from bot.integrations.probes import ProbeContext, ProbeResult, run_probe
from tests.support.config_check import located_problems
from tests.support.moto import use_moto


@pytest.fixture(autouse=True)
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    use_moto(monkeypatch, moto_endpoint, tmp_path)
    return moto_endpoint


@pytest.fixture
def namespace() -> str:
    return f"Test/{uuid.uuid4().hex[:8]}"


def put(namespace: str, *values: float, dimensions: dict[str, str] | None = None) -> None:
    """Datapoints a minute apart, the last one a minute ago."""
    now = datetime.now(UTC)
    boto3.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": "ErrorRate",
                "Dimensions": [{"Name": k, "Value": v} for k, v in (dimensions or {}).items()],
                "Timestamp": now - timedelta(minutes=len(values) - n),
                "Value": value,
            }
            for n, value in enumerate(values)
        ],
    )


def probe(namespace: str, ctx: ProbeContext | None = None, **fields: Any) -> ProbeResult:
    spec = TypeAdapter(ProbeSpec).validate_python(
        {
            "kind": "cloudwatch_metric",
            "namespace": namespace,
            "metric": "ErrorRate",
            "statistic": "Maximum",
            "window": "10m",
            "reduce": "max",
            "condition": "result < 0.01",
            "description": "error rate",
        }
        | fields
    )
    return run_probe("errors", spec, ctx=ctx or ProbeContext())


def test_a_metric_under_the_threshold_passes(namespace: str) -> None:
    put(namespace, 0.002, 0.004)
    result = probe(namespace)
    assert (result.ok, result.summary) == (True, "error rate: 0.004 < 0.01 ✓")
    assert result.detail.splitlines()[0] == (f"query: {namespace} ErrorRate{{}} Maximum per 1m")


def test_a_metric_over_the_threshold_fails(namespace: str) -> None:
    put(namespace, 0.002, 0.5)
    result = probe(namespace)
    assert (result.ok, result.summary) == (False, "error rate: 0.5 < 0.01 ✗")
    average = probe(namespace, reduce="avg", condition="result < 0.3")
    assert (average.ok, average.summary) == (True, "error rate: 0.251 < 0.3 ✓")


def test_no_datapoints_is_inconclusive(namespace: str) -> None:
    result = probe(namespace)
    assert (result.ok, result.summary) == (False, "inconclusive: error rate: no data")


def test_dimensions_are_templated_with_the_session(namespace: str) -> None:
    put(namespace, 0.5, dimensions={"Version": "v1"})
    put(namespace, 0.001, dimensions={"Version": "v2"})
    ctx = ProbeContext(template={"version": "v2"})
    result = probe(namespace, ctx, dimensions={"Version": "{{version}}"})
    assert (result.ok, result.summary) == (True, "error rate: 0.001 < 0.01 ✓")
    missing = probe(namespace, ProbeContext(), dimensions={"Version": "{{version}}"})
    assert (missing.ok, missing.runnable) == (False, False)
    assert missing.summary == (
        "not runnable: dimension Version needs {{version}}, which this session does not have"
    )


def test_repeated_measurements_wait_through_the_context(namespace: str) -> None:
    put(namespace, 0.5)
    slept: list[float] = []
    ctx = ProbeContext(sleep=slept.append)
    result = probe(namespace, ctx, count=4, interval="30s", timeout="3m", failure_limit=1)
    assert not result.ok
    assert result.summary.startswith("failed: 0 passed, 2 failed, 0 inconclusive of 4")
    assert slept == [30.0]  # stopped after the second failure


def test_an_unreachable_endpoint_is_an_error(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    result = probe(namespace, timeout="2s")
    assert not result.ok
    assert result.summary.startswith("error: CloudWatch: Could not connect to the endpoint URL")


CONFIG = """\
roles:
  deployers: [U0DEPLOY1]
probes:
  errors:
    kind: cloudwatch_metric
    namespace: AWS/ApplicationELB
    metric: HTTPCode_Target_5XX_Count
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
        ("", "4: probes.errors: missing required key 'condition'"),
        (
            "    condition: result <\n",
            "8: probes.errors.condition: expected a number, a name, 'abs(' or '(', found the "
            "end at column 9",
        ),
        (
            "    condition: canary < 1\n",
            "8: probes.errors.condition: unknown name 'canary' (known: result) at column 1",
        ),
        (
            "    condition: result < 1\n    statistic: Avg\n",
            "9: probes.errors.statistic: 'Avg' is not a CloudWatch statistic (Average, Sum, "
            "Minimum, Maximum, SampleCount, or a percentile such as p99)",
        ),
        (
            "    condition: result < 1\n    period: 90s\n",
            "4: probes.errors: period must be 1s, 5s, 10s, 30s or a multiple of 1m "
            "(CloudWatch's rule)",
        ),
        (
            "    condition: result < 1\n    period: 10m\n",
            "4: probes.errors: window must be at least one period",
        ),
        (
            "    condition: result < 1\n    dimensions: {LoadBalancer: '{{lb}}'}\n",
            "9: probes.errors.dimensions.LoadBalancer: unknown template name '{{lb}}' "
            "(known: service, version, previous_version, environment)",
        ),
        (
            "    condition: result < 1\n    count: 3\n    interval: 1m\n",
            "4: probes.errors: timeout 10s does not cover initial_delay + count x interval: "
            "make it at least 3m",
        ),
    ],
)
def test_bad_config_is_located_at_config_check(tmp_path: Path, extra: str, problem: str) -> None:
    assert located_problems(tmp_path, CONFIG.format(extra=extra)) == [f"deploybot.yaml:{problem}"]
