"""ECS and Lambda rollbacks against moto's threaded server on loopback.

moto's ECS reports a service's ``runningCount`` from ``MOTO_ECS_SERVICE_RUNNING`` (read in
this process, where the server runs) when the service is created: a service created with
that many tasks desired is stable at once, one that wants more never becomes stable.
"""

from __future__ import annotations

import io
import socket
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from bot.integrations.aws_rollback import (
    RollbackFailed,
    previous_lambda_version,
    previous_task_definition,
    rollback_ecs,
    rollback_lambda,
)
from tests.support.moto import use_moto
from tests.support.timing import HANG_MARGIN

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials and a region, nothing from ~/.aws, AWS_ENDPOINT_URL at moto."""
    use_moto(monkeypatch, moto_endpoint, tmp_path)
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")


def aws(service: str) -> Any:
    """A client at moto (endpoint and credentials from the environment)."""
    return boto3.client(service, region_name=REGION)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- ECS -----------------------------------------------------------------------------------


def register(family: str, revisions: int) -> list[str]:
    """Register ``revisions`` revisions of a task definition family; their ARNs in order."""
    ecs = aws("ecs")
    return [
        ecs.register_task_definition(
            family=family,
            containerDefinitions=[{"name": "web", "image": f"web:{n}", "memory": 128}],
        )["taskDefinition"]["taskDefinitionArn"]
        for n in range(1, revisions + 1)
    ]


def ecs_service(task_definition: str, *, desired: int = 1) -> tuple[str, str]:
    cluster, service = unique("prod"), unique("api")
    ecs = aws("ecs")
    ecs.create_cluster(clusterName=cluster)
    ecs.create_service(
        cluster=cluster, serviceName=service, taskDefinition=task_definition, desiredCount=desired
    )
    return cluster, service


def running(cluster: str, service: str) -> str:
    described = aws("ecs").describe_services(cluster=cluster, services=[service])
    task_definition: str = described["services"][0]["taskDefinition"]
    return task_definition


def test_ecs_rollback_moves_the_service_to_the_previous_revision() -> None:
    family = unique("web")
    first, second = register(family, 2)
    cluster, service = ecs_service(second)
    ecs = aws("ecs")

    assert previous_task_definition(ecs, cluster, service) == first
    done = rollback_ecs(ecs, cluster=cluster, service=service, timeout=30)

    assert running(cluster, service) == first
    assert done == (
        f"ECS service '{service}' in cluster '{cluster}': {family}:2 -> {family}:1, stable"
    )


def test_ecs_rollback_skips_deregistered_revisions() -> None:
    family = unique("web")
    first, second, third = register(family, 3)
    aws("ecs").deregister_task_definition(taskDefinition=second)
    cluster, service = ecs_service(third)

    rollback_ecs(aws("ecs"), cluster=cluster, service=service, timeout=30)

    assert running(cluster, service) == first


def test_ecs_without_a_previous_revision_is_a_clear_error_and_changes_nothing() -> None:
    family = unique("web")
    (only,) = register(family, 1)
    cluster, service = ecs_service(only)
    ecs = aws("ecs")

    assert previous_task_definition(ecs, cluster, service) is None
    with pytest.raises(RollbackFailed) as failure:
        rollback_ecs(ecs, cluster=cluster, service=service, timeout=30)

    assert str(failure.value) == (
        f"ECS service '{service}' in cluster '{cluster}' runs {family}:1 and no earlier "
        f"ACTIVE revision of '{family}' exists: nothing to roll back to"
    )
    assert running(cluster, service) == only


def test_ecs_unknown_service_is_a_clear_error() -> None:
    family = unique("web")
    register(family, 2)
    cluster, _ = ecs_service(f"{family}:2")

    with pytest.raises(RollbackFailed, match=r"ECS service 'nope' in cluster '.*' not found"):
        rollback_ecs(aws("ecs"), cluster=cluster, service="nope", timeout=30)


def test_ecs_unknown_cluster_is_a_clear_error() -> None:
    with pytest.raises(RollbackFailed) as failure:
        rollback_ecs(aws("ecs"), cluster="no-such-cluster", service="api", timeout=30)

    assert str(failure.value).startswith(
        "ECS service 'api' in cluster 'no-such-cluster': DescribeServices failed "
        "(ClusterNotFoundException)"
    )


def test_ecs_service_that_never_stabilises_fails_within_the_timeout() -> None:
    family = unique("web")
    first, second = register(family, 2)
    cluster, service = ecs_service(second, desired=3)  # moto runs 1 task: never stable

    started = time.monotonic()
    with pytest.raises(RollbackFailed) as failure:
        rollback_ecs(aws("ecs"), cluster=cluster, service=service, timeout=1)
    elapsed = time.monotonic() - started

    assert str(failure.value).startswith(
        f"ECS service '{service}' in cluster '{cluster}': updated {family}:2 -> {family}:1 "
        "but it was not stable within 1s"
    )
    assert running(cluster, service) == first  # the update itself went through
    assert elapsed < 1 + HANG_MARGIN


# --- Lambda --------------------------------------------------------------------------------


def function_with_versions(count: int) -> str:
    """A function with ``count`` published versions (each with different code)."""
    name = unique("checkout")
    lmb = aws("lambda")
    role = aws("iam").create_role(RoleName=unique("role"), AssumeRolePolicyDocument="{}")
    for n in range(1, count + 1):
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("lambda_function.py", f"def handler(e, c):\n    return {n}\n")
        if n == 1:
            lmb.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role["Role"]["Arn"],
                Handler="lambda_function.handler",
                Code={"ZipFile": archive.getvalue()},
            )
        else:
            lmb.update_function_code(FunctionName=name, ZipFile=archive.getvalue())
        assert lmb.publish_version(FunctionName=name)["Version"] == str(n)
    return name


def alias_version(function: str, alias: str) -> str:
    version: str = aws("lambda").get_alias(FunctionName=function, Name=alias)["FunctionVersion"]
    return version


def test_lambda_rollback_moves_the_alias_to_the_previous_version() -> None:
    function = function_with_versions(2)
    lmb = aws("lambda")
    lmb.create_alias(FunctionName=function, Name="live", FunctionVersion="2")

    assert previous_lambda_version(lmb, function, "live") == "1"
    done = rollback_lambda(lmb, function=function, alias="live")

    assert alias_version(function, "live") == "1"
    assert done == f"Lambda alias '{function}:live': version 2 -> 1"


def test_lambda_previous_version_is_the_highest_below_the_current() -> None:
    function = function_with_versions(4)
    lmb = aws("lambda")
    lmb.create_alias(FunctionName=function, Name="live", FunctionVersion="3")
    lmb.create_alias(FunctionName=function, Name="edge", FunctionVersion="$LATEST")

    assert previous_lambda_version(lmb, function, "live") == "2"
    assert previous_lambda_version(lmb, function, "edge") == "4"


def test_lambda_without_a_previous_version_is_a_clear_error_and_changes_nothing() -> None:
    function = function_with_versions(2)
    lmb = aws("lambda")
    lmb.create_alias(FunctionName=function, Name="live", FunctionVersion="1")

    assert previous_lambda_version(lmb, function, "live") is None
    with pytest.raises(RollbackFailed) as failure:
        rollback_lambda(lmb, function=function, alias="live")

    assert str(failure.value) == (
        f"Lambda alias '{function}:live' is at version 1 and no earlier version is "
        "published: nothing to roll back to"
    )
    assert alias_version(function, "live") == "1"


def test_lambda_rollback_of_a_canary_stops_the_canary() -> None:
    function = function_with_versions(3)
    lmb = aws("lambda")
    lmb.create_alias(
        FunctionName=function,
        Name="live",
        FunctionVersion="2",
        RoutingConfig={"AdditionalVersionWeights": {"3": 0.1}},
    )

    done = rollback_lambda(lmb, function=function, alias="live")

    described = lmb.get_alias(FunctionName=function, Name="live")
    assert described["FunctionVersion"] == "2"
    assert not described.get("RoutingConfig", {}).get("AdditionalVersionWeights")
    assert done == (
        f"Lambda alias '{function}:live': canary to version 3 stopped, all traffic on version 2"
    )


def test_lambda_unknown_alias_is_a_clear_error() -> None:
    function = function_with_versions(1)

    with pytest.raises(RollbackFailed) as failure:
        rollback_lambda(aws("lambda"), function=function, alias="nope")

    assert str(failure.value).startswith(
        f"Lambda alias '{function}:nope': GetAlias failed (ResourceNotFoundException)"
    )


# --- Both ------------------------------------------------------------------------------------


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL at a loopback port where nothing listens."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")


@pytest.mark.usefixtures("unreachable")
def test_an_unreachable_endpoint_is_a_clear_error() -> None:
    with pytest.raises(RollbackFailed) as ecs_failure:
        rollback_ecs(aws("ecs"), cluster="prod", service="api", timeout=5)
    with pytest.raises(RollbackFailed) as lambda_failure:
        rollback_lambda(aws("lambda"), function="checkout", alias="live")

    assert str(ecs_failure.value).startswith(
        "ECS service 'api' in cluster 'prod': Could not connect to the endpoint URL"
    )
    assert str(lambda_failure.value).startswith(
        "Lambda alias 'checkout:live': Could not connect to the endpoint URL"
    )


def test_no_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    lmb = boto3.session.Session(region_name=REGION).client("lambda")  # not the cached default

    with pytest.raises(RollbackFailed) as failure:
        rollback_lambda(lmb, function="checkout", alias="live")

    assert str(failure.value) == "Lambda alias 'checkout:live': Unable to locate credentials"
