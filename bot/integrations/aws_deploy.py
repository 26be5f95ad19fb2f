"""Deploying to ECS and Lambda: a new task-definition revision, a new Lambda version and alias.

Plain functions over boto3 clients the caller builds, as :mod:`bot.integrations.aws_rollback`
is. Each change is made once (the caller claims the step first); what follows only reads
(:func:`ecs_progress`, :func:`lambda_update_status`) or may be repeated safely
(:func:`publish_version` returns the version already published for unchanged code, and
:func:`route_alias` sets the alias to a state, not by a difference). Errors are
:class:`~bot.integrations.deploy_steps.StepError` naming the target and the call AWS refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bot.integrations.aws_rollback import task_definition_name
from bot.integrations.deploy_steps import StepError

# What RegisterTaskDefinition takes back of what DescribeTaskDefinition gives.
REGISTERABLE = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
)


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """AWS's error answers and the client's own failures as a :class:`StepError`."""
    try:
        yield
    except ClientError as error:
        details = error.response.get("Error", {})
        code, message = details.get("Code", "Unknown"), details.get("Message", "")
        said = f": {message}" if message else ""
        raise StepError(f"{what}: {error.operation_name} failed ({code}){said}") from error
    except BotoCoreError as error:
        raise StepError(f"{what}: {error}") from error


# --- ECS -----------------------------------------------------------------------------------


def new_revision(current: Mapping[str, Any], images: Mapping[str, str]) -> dict[str, Any]:
    """RegisterTaskDefinition's arguments: ``current`` (a described task definition) with
    the named containers' images replaced.

    Raises:
        StepError: a named container is not in the task definition.
    """
    arguments = {key: current[key] for key in REGISTERABLE if current.get(key) is not None}
    containers = [dict(c) for c in current.get("containerDefinitions", [])]
    missing = sorted(set(images) - {c.get("name") for c in containers})
    if missing:
        family = current.get("family", "?")
        raise StepError(f"task definition '{family}' has no container named '{missing[0]}'")
    for container in containers:
        if container.get("name") in images:
            container["image"] = images[container["name"]]
    arguments["containerDefinitions"] = containers
    return arguments


def update_ecs(ecs: Any, *, cluster: str, service: str, images: Mapping[str, str]) -> str:
    """Register a revision of the service's task definition with ``images`` and point the
    service at it; one line saying so (``web:3 -> web:4``)."""
    what = _what(cluster, service)
    with aws_errors(what):
        current = _service(ecs, cluster, service)["taskDefinition"]
        described = ecs.describe_task_definition(taskDefinition=current)["taskDefinition"]
        registered = ecs.register_task_definition(**new_revision(described, images))
        arn = registered["taskDefinition"]["taskDefinitionArn"]
        ecs.update_service(cluster=cluster, service=service, taskDefinition=arn)
    shown = ", ".join(f"{c}={i}" for c, i in images.items())
    return f"{what}: {task_definition_name(current)} -> {task_definition_name(arn)} ({shown})"


def ecs_progress(ecs: Any, *, cluster: str, service: str) -> tuple[bool, str]:
    """Whether the service is stable as the ``services-stable`` waiter judges it (one
    deployment, as many tasks running as desired), and what it is at.

    Raises:
        StepError: its rollout failed (ECS's circuit breaker), or AWS refused.
    """
    what = _what(cluster, service)
    with aws_errors(what):
        described = _service(ecs, cluster, service)
    task_definition = described["taskDefinition"]
    deployments = described.get("deployments") or []
    if any(d.get("rolloutState") == "FAILED" for d in deployments):
        reason = next(d.get("rolloutStateReason", "") for d in deployments)
        raise StepError(f"{what}: the rollout failed ({reason or 'no reason given'})")
    running, desired = described.get("runningCount", 0), described.get("desiredCount", 0)
    status = (
        f"{what}: {task_definition_name(task_definition)}, {running} of {desired} tasks running, "
        f"{len(deployments)} deployment(s)"
    )
    return len(deployments) == 1 and running == desired, status


def _service(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    answer = ecs.describe_services(cluster=cluster, services=[service])
    services = [s for s in answer.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        raise StepError(f"{_what(cluster, service)} not found")
    found: dict[str, Any] = services[0]
    return found


def _what(cluster: str, service: str) -> str:
    return f"ECS service '{service}' in cluster '{cluster}'"


# --- Lambda --------------------------------------------------------------------------------


def update_lambda_code(lmb: Any, *, function: str, code: Mapping[str, str]) -> str:
    """Update the function's code (``ImageUri``, or ``S3Bucket`` and ``S3Key``)."""
    with aws_errors(f"Lambda function '{function}'"):
        answer = lmb.update_function_code(FunctionName=function, **code)
    where = code.get("ImageUri") or f"s3://{code.get('S3Bucket')}/{code.get('S3Key')}"
    return f"Lambda function '{function}': code from {where}, sha256 {answer.get('CodeSha256')}"


def lambda_update_status(lmb: Any, *, function: str) -> tuple[bool, str]:
    """Whether the code update is done (``LastUpdateStatus``), and that status.

    Raises:
        StepError: the update failed.
    """
    with aws_errors(f"Lambda function '{function}'"):
        config = lmb.get_function_configuration(FunctionName=function)
    status = config.get("LastUpdateStatus") or "Successful"
    if status == "Failed":
        reason = config.get("LastUpdateStatusReason") or "no reason given"
        raise StepError(f"Lambda function '{function}': the code update failed: {reason}")
    return status == "Successful", f"Lambda function '{function}': update {status}"


def publish_version(lmb: Any, *, function: str) -> str:
    """Publish the function's code as a version (the existing one for unchanged code)."""
    with aws_errors(f"Lambda function '{function}'"):
        version: str = lmb.publish_version(FunctionName=function)["Version"]
    return version


def alias_state(lmb: Any, *, function: str, alias: str) -> tuple[str, dict[str, float]]:
    """The alias's version and its additional weighted versions."""
    with aws_errors(f"Lambda alias '{function}:{alias}'"):
        described = lmb.get_alias(FunctionName=function, Name=alias)
    weights = (described.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return described["FunctionVersion"], dict(weights)


def route_alias(lmb: Any, *, function: str, alias: str, stable: str, new: str, percent: int) -> str:
    """Send ``percent`` of the alias's traffic to version ``new`` (the rest to ``stable``);
    at 100 the alias points at ``new`` alone."""
    what = f"Lambda alias '{function}:{alias}'"
    with aws_errors(what):
        if percent >= 100 or stable == new:
            lmb.update_alias(
                FunctionName=function,
                Name=alias,
                FunctionVersion=new,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )
            return f"{what}: all traffic on version {new}"
        lmb.update_alias(
            FunctionName=function,
            Name=alias,
            FunctionVersion=stable,
            RoutingConfig={"AdditionalVersionWeights": {new: percent / 100}},
        )
    return f"{what}: {percent}% on version {new}, the rest on version {stable}"
