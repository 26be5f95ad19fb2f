"""The analysis, ECS and Lambda deploy steps: an analysis over a loopback health endpoint,
ECS and Lambda at moto's threaded server (the weighted alias checked on the alias), each
run by the runner on an injected clock, deferring between looks instead of sleeping."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from bot.app.deploy_plan import plan_steps
from bot.app.deploy_steps import DeploySteps
from bot.app.sessions import DeployService
from bot.app.step_kinds import round_phase, series_verdict
from bot.config.deploy_specs import Measurements
from bot.config.loader import load_config
from bot.domain import SessionState
from bot.domain.checklist import Severity
from bot.domain.commands import StartDeployment
from bot.domain.step_progress import StepState
from bot.integrations.aws_deploy import new_revision
from bot.integrations.deploy_steps import StepError
from bot.integrations.probes.base import ProbeResult
from bot.storage.outbox import Defer
from tests.support.health import HealthEndpoint
from tests.support.moto import REGION, moto_server, use_moto
from tests.test_prometheus_server import METRIC, Server, prometheus

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
__all__ = ["prometheus"]  # the real Prometheus fixture, module-scoped here too


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def write_config(tmp_path: Path, deploy: Any, probes: dict[str, Any] | None = None) -> Path:
    (tmp_path / "checklist.yaml").write_text(
        yaml.safe_dump({"sections": [{"title": "Go", "items": [{"text": "ready"}]}]})
    )
    config = {
        "roles": {"deployers": ["U0DEPLOYER"]},
        "probes": probes or {},
        "environments": {
            "prod": {
                "channel": "#deploys",
                "checklist": "checklist.yaml",
                "starters": ["deployers"],
                "deploy": deploy,
            }
        },
    }
    path = tmp_path / "deploybot.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def runner_for(
    tmp_path: Path,
    factory: sessionmaker[Session],
    steps: list[dict[str, Any]],
    probes: dict[str, Any] | None = None,
) -> tuple[DeploySteps, DeployService, Clock, int]:
    config = load_config(write_config(tmp_path, {"on_failure": "ask", "steps": steps}, probes))
    clock = Clock()
    service = DeployService(config=config, session_factory=factory, clock=clock)
    session = service.open(environment="prod", user_id="U0DEPLOYER", version="v2")
    assert session.id is not None
    service.act(session.id, StartDeployment(), "U0DEPLOYER")
    return DeploySteps(config=config, service=service, poll=5.0), service, clock, session.id


def deferred(runner: DeploySteps, sid: int) -> float:
    with pytest.raises(Defer) as waiting:
        runner.execute(sid)
    return waiting.value.seconds


def measured(service: DeployService, sid: int) -> list[dict[str, Any]]:
    return [e.data for e in service.history(sid) if e.kind == "deploy_step_measured"]


# --- analysis --------------------------------------------------------------------------------


def health_probe(health: HealthEndpoint) -> dict[str, Any]:
    return {"health": {"kind": "http", "url": f"{health.url}/health", "timeout": "2s"}}


ANALYSIS = {"kind": "analysis", "probes": ["health"], "count": 3, "interval": "1m"}


def test_an_analysis_measures_when_due_and_defers_between_rounds(
    tmp_path: Path, session_factory: sessionmaker[Session], health: HealthEndpoint
) -> None:
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [ANALYSIS], health_probe(health)
    )
    assert deferred(runner, sid) == 60  # round 1 ran at once; round 2 is due in a minute
    clock.now += timedelta(seconds=45)
    assert deferred(runner, sid) == 15  # not due: nothing measured
    assert [m["phase"] for m in measured(service, sid)] == ["passed"]
    clock.now += timedelta(seconds=15)
    assert deferred(runner, sid) == 60
    clock.now += timedelta(minutes=1)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.VERIFYING
    assert session.steps[0].detail == "analysis passed (3 passed, 0 failed, 0 inconclusive)"
    assert session.steps[0].measurements == (":passed", ":passed", ":passed")
    assert measured(service, sid)[0]["detail"].startswith("health: ")


def test_a_failed_round_beyond_the_limit_fails_the_step(
    tmp_path: Path, session_factory: sessionmaker[Session], health: HealthEndpoint
) -> None:
    step = ANALYSIS | {"failure_limit": 1}
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [step], health_probe(health)
    )
    health.healthy = False
    deferred(runner, sid)  # one failed round is within the limit
    assert service.get(sid).state is SessionState.DEPLOYING
    clock.now += timedelta(minutes=1)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert session.steps[0].state is StepState.FAILED
    assert session.outcome_reason == (
        "step 1 (analysis: health x3) failed: "
        "analysis failed (0 passed, 2 failed, 0 inconclusive of 3 rounds)"
    )


def test_an_initial_delay_comes_before_the_first_round(
    tmp_path: Path, session_factory: sessionmaker[Session], health: HealthEndpoint
) -> None:
    step = ANALYSIS | {"count": 1, "initial_delay": "2m"}
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [step], health_probe(health)
    )
    assert deferred(runner, sid) == 120
    assert measured(service, sid) == []
    clock.now += timedelta(minutes=2)
    runner.execute(sid)
    assert service.get(sid).state is SessionState.VERIFYING


def result(ok: bool, detail: str = "", runnable: bool = True) -> ProbeResult:
    return ProbeResult("p", "prometheus", ok, "", detail, 0.1, Severity.CRITICAL, NOW, runnable)


def test_a_round_is_inconclusive_only_when_a_metric_had_no_data() -> None:
    no_data = (
        "query: up\ncondition: result > 0\n1. 12:00:00 inconclusive: no data\nverdict: inconclusive"
    )
    assert round_phase([result(True), result(False, no_data)]) == "inconclusive"
    assert round_phase([result(False, no_data), result(False, "HTTP 503")]) == "failed"
    assert round_phase([result(False, no_data, runnable=False)]) == "failed"
    assert round_phase([result(True), result(True)]) == "passed"
    spec = Measurements(probes=("p",), count=3, inconclusive_limit=1)
    assert series_verdict(spec, ["passed", "inconclusive"]) == "running"
    assert series_verdict(spec, ["inconclusive", "inconclusive"]) == "inconclusive"
    assert series_verdict(spec, ["passed", "inconclusive", "passed"]) == "passed"


def test_the_config_refuses_unknown_probes_and_bad_lambda_steps(tmp_path: Path) -> None:
    from bot.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown probe 'nope'"):
        load_config(write_config(tmp_path, [{"kind": "analysis", "probes": ["nope"]}]))
    lam = {"kind": "lambda", "function": "f", "alias": "live"}
    with pytest.raises(ConfigError, match="either 'image_uri' or 's3_bucket'"):
        load_config(write_config(tmp_path, [lam]))
    with pytest.raises(ConfigError, match="rises step by step and ends at 100"):
        load_config(
            write_config(tmp_path, [lam | {"image_uri": "i:{version}", "routing": [50, 10]}])
        )
    with pytest.raises(ValidationError):
        Measurements(probes=())


# --- ECS and Lambda at moto ------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_moto(monkeypatch, moto_endpoint, tmp_path)
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")


def aws(kind: str) -> Any:
    return boto3.client(kind, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ecs_service(desired: int = 1) -> tuple[str, str, str]:
    ecs, family = aws("ecs"), unique("web")
    first = ecs.register_task_definition(
        family=family,
        containerDefinitions=[
            {"name": "web", "image": "registry.example/web:v1", "memory": 128},
            {"name": "proxy", "image": "envoy:1.29", "memory": 64},
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    cluster, service = unique("prod"), unique("api")
    ecs.create_cluster(clusterName=cluster)
    ecs.create_service(
        cluster=cluster, serviceName=service, taskDefinition=first, desiredCount=desired
    )
    return cluster, service, family


def ecs_step(cluster: str, service: str) -> dict[str, Any]:
    return {
        "kind": "ecs",
        "cluster": cluster,
        "service": service,
        "containers": {"web": "registry.example/web:{version}"},
        "region": REGION,
        "timeout": "5m",
    }


@pytest.mark.usefixtures("aws_env")
def test_an_ecs_step_registers_a_revision_with_the_new_image_and_waits_for_stable(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    cluster, service_name, family = ecs_service()
    runner, service, _, sid = runner_for(
        tmp_path, session_factory, [ecs_step(cluster, service_name)]
    )
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.VERIFYING
    ecs = aws("ecs")
    running = ecs.describe_services(cluster=cluster, services=[service_name])["services"][0]
    assert running["taskDefinition"].endswith(f"task-definition/{family}:2")
    containers = ecs.describe_task_definition(taskDefinition=running["taskDefinition"])[
        "taskDefinition"
    ]["containerDefinitions"]
    assert {c["name"]: c["image"] for c in containers} == {
        "web": "registry.example/web:v2",
        "proxy": "envoy:1.29",
    }
    assert session.steps[0].detail is not None
    assert "1 of 1 tasks running" in session.steps[0].detail


@pytest.mark.usefixtures("aws_env")
def test_an_ecs_service_that_is_not_stable_in_time_fails_the_step(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    cluster, service_name, _ = ecs_service(desired=2)  # moto runs 1: never stable
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [ecs_step(cluster, service_name)]
    )
    assert deferred(runner, sid) == 5.0  # the runner's poll
    clock.now += timedelta(minutes=5, seconds=1)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert session.steps[0].detail is not None
    assert session.steps[0].detail.startswith("not stable within 5m: ")
    assert "1 of 2 tasks running" in session.steps[0].detail


def test_a_new_revision_keeps_what_ecs_described_and_refuses_an_unknown_container() -> None:
    described = {
        "family": "web",
        "revision": 3,
        "status": "ACTIVE",
        "cpu": "256",
        "containerDefinitions": [{"name": "web", "image": "a"}],
    }
    assert new_revision(described, {"web": "b"}) == {
        "family": "web",
        "cpu": "256",
        "containerDefinitions": [{"name": "web", "image": "b"}],
    }
    with pytest.raises(StepError, match="no container named 'db'"):
        new_revision(described, {"db": "x"})


def lambda_function() -> tuple[str, str]:
    """A function with version 1 behind alias ``live``, and a bucket for new code."""
    name, bucket = unique("checkout"), unique("code")
    lmb, s3 = aws("lambda"), aws("s3")
    role = aws("iam").create_role(RoleName=unique("role"), AssumeRolePolicyDocument="{}")
    lmb.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="lambda_function.handler",
        Code={"ZipFile": bundle(1)},
    )
    lmb.publish_version(FunctionName=name)
    lmb.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="checkout-v2.zip", Body=bundle(2))
    return name, bucket


def bundle(n: int) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("lambda_function.py", f"def handler(e, c):\n    return {n}\n")
    return archive.getvalue()


def alias(function: str) -> tuple[str, dict[str, float]]:
    got = aws("lambda").get_alias(FunctionName=function, Name="live")
    return got["FunctionVersion"], (got.get("RoutingConfig") or {}).get(
        "AdditionalVersionWeights", {}
    )


def lambda_step(function: str, bucket: str) -> dict[str, Any]:
    return {
        "kind": "lambda",
        "function": function,
        "alias": "live",
        "s3_bucket": bucket,
        "s3_key": "checkout-{version}.zip",
        "routing": [10, 50, 100],
        "analysis": {"probes": ["health"], "initial_delay": "1m"},
        "region": REGION,
    }


@pytest.mark.usefixtures("aws_env")
def test_a_lambda_step_moves_the_alias_weight_by_weight_with_analysis_between(
    tmp_path: Path, session_factory: sessionmaker[Session], health: HealthEndpoint
) -> None:
    function, bucket = lambda_function()
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [lambda_step(function, bucket)], health_probe(health)
    )
    assert deferred(runner, sid) == 60
    assert alias(function) == ("1", {"2": 0.1})
    clock.now += timedelta(minutes=1)
    assert deferred(runner, sid) == 60
    assert alias(function) == ("1", {"2": 0.5})
    clock.now += timedelta(minutes=1)
    runner.execute(sid)
    assert alias(function) == ("2", {})
    session = service.get(sid)
    assert session.state is SessionState.VERIFYING
    assert session.steps[0].measurements == (
        "10:shifted",
        "10:passed",
        "50:shifted",
        "50:passed",
        "100:shifted",
    )
    code = aws("lambda").get_function(FunctionName=function, Qualifier="2")
    assert code["Configuration"]["Version"] == "2"


@pytest.mark.usefixtures("aws_env")
def test_a_failed_analysis_leaves_the_canary_for_the_rollback(
    tmp_path: Path, session_factory: sessionmaker[Session], health: HealthEndpoint
) -> None:
    from bot.integrations.aws_rollback import rollback_lambda

    function, bucket = lambda_function()
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [lambda_step(function, bucket)], health_probe(health)
    )
    deferred(runner, sid)
    health.healthy = False
    clock.now += timedelta(minutes=1)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert alias(function) == ("1", {"2": 0.1})  # the 10% canary is all that moved
    rollback_lambda(aws("lambda"), function=function, alias="live")
    assert alias(function) == ("1", {})


def test_the_plan_says_what_ecs_and_lambda_steps_would_do(tmp_path: Path) -> None:
    probes = {"health": {"kind": "http", "url": "http://127.0.0.1:9/health"}}
    steps = [ecs_step("prod", "api"), lambda_step("checkout", "code"), ANALYSIS]
    config = load_config(write_config(tmp_path, steps, probes))
    _, planned = plan_steps(config, "prod", "v7")
    assert planned[0].does[1] == "  web: (current image) -> registry.example/web:v7"
    assert planned[1].does[0] == (
        'update the code of Lambda function checkout: {"S3Bucket": "code", '
        '"S3Key": "checkout-v7.zip"}'
    )
    assert planned[1].does[1] == "publish a version; move alias live to it: 10%, 50%, 100%"
    assert planned[2].name == "analysis: health x3"


# --- a metric probe in an analysis, against the real Prometheus --------------------------------


def prometheus_probes(server: Server) -> dict[str, Any]:
    """Probes that measure 5 times 10 s apart on their own: in a step, once per round."""
    base = {
        "kind": "prometheus",
        "url": server.url,
        "condition": "result < 0.01",
        "description": "error rate",
        "count": 5,
        "interval": "10s",
        "timeout": "1m",
    }
    return {
        "error-rate": base | {"query": f'{METRIC}{{job_kind="api"}}'},
        "no-data": base | {"query": f'{METRIC}{{job_kind="nothing"}}'},
    }


def test_an_analysis_of_a_prometheus_metric_measures_once_per_round(
    tmp_path: Path, session_factory: sessionmaker[Session], prometheus: Server
) -> None:
    prometheus.set(api=0.001)
    step = {"kind": "analysis", "probes": ["error-rate"], "count": 2, "interval": "1m"}
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [step], prometheus_probes(prometheus)
    )
    assert deferred(runner, sid) == 60
    (first,) = measured(service, sid)
    assert first["detail"] == "error-rate: error rate: 0.001 < 0.01 ✓"  # one measurement
    prometheus.set(api=0.5)
    clock.now += timedelta(minutes=1)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert measured(service, sid)[1]["detail"] == "error-rate: error rate: 0.5 < 0.01 ✗"
    assert session.steps[0].detail == (
        "analysis failed (1 passed, 1 failed, 0 inconclusive of 2 rounds)"
    )


def test_a_metric_without_data_makes_the_round_inconclusive(
    tmp_path: Path, session_factory: sessionmaker[Session], prometheus: Server
) -> None:
    step = {"kind": "analysis", "probes": ["no-data"], "count": 3, "inconclusive_limit": 1}
    runner, service, clock, sid = runner_for(
        tmp_path, session_factory, [step], prometheus_probes(prometheus)
    )
    deferred(runner, sid)
    assert service.get(sid).steps[0].measurements == (":inconclusive",)
    clock.now += timedelta(minutes=1)
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert session.steps[0].detail == (
        "analysis inconclusive (0 passed, 0 failed, 2 inconclusive of 3 rounds)"
    )
