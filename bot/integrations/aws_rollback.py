"""Rolling an ECS service or a Lambda alias back to what it ran before.

Plain functions over boto3 clients the caller builds (region, endpoint, timeouts), so the
rollback executor decides where they run and the tests point them at moto. No Slack, no
database: each returns a one-line description of what it did, or raises ``RollbackFailed``
with a message fit to post in the incident thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from bot.domain.errors import DeployError

MAX_WAITER_DELAY = 15  # seconds between stability checks, as the AWS CLI waiter does
LATEST = "$LATEST"


class RollbackFailed(DeployError):
    """The rollback could not be done, or not completely; the message says which and why."""


@contextmanager
def _aws_errors(what: str) -> Iterator[None]:
    """Turn AWS's errors into ``RollbackFailed`` naming the target (and the call refused).

    Covers error answers and the client's own failures: no credentials, no region, an
    unreachable endpoint, a timeout.
    """
    try:
        yield
    except ClientError as error:
        details = error.response.get("Error", {})
        code, message = details.get("Code", "Unknown"), details.get("Message", "")
        said = f": {message}" if message else ""
        raise RollbackFailed(f"{what}: {error.operation_name} failed ({code}){said}") from error
    except BotoCoreError as error:
        raise RollbackFailed(f"{what}: {error}") from error


# --- ECS -----------------------------------------------------------------------------------


def previous_task_definition(ecs: Any, cluster: str, service: str) -> str | None:
    """The task definition an ECS service ran before its current one.

    That is the highest ACTIVE revision of the same family below the current revision
    (deregistered revisions cannot be run, so they are skipped).

    Args:
        ecs: A boto3 ECS client.
        cluster: The cluster name or ARN.
        service: The service name or ARN.

    Returns:
        The ARN of that revision, or None when the current revision is the oldest ACTIVE one.

    Raises:
        RollbackFailed: The service does not exist, or AWS refused a call or could not be
            reached.
    """
    what = _ecs_what(cluster, service)
    with _aws_errors(what):
        current = _current_task_definition(ecs, cluster, service)
        return _previous_revision(ecs, current)


def rollback_ecs(ecs: Any, *, cluster: str, service: str, timeout: timedelta | float) -> str:
    """Point an ECS service at its previous task definition and wait until it is stable.

    Args:
        ecs: A boto3 ECS client.
        cluster: The cluster name or ARN.
        service: The service name or ARN.
        timeout: How long to wait for the service to become stable (seconds or a timedelta).

    Returns:
        What was done, e.g. ``ECS service 'api' in cluster 'prod': web:3 -> web:2, stable``.

    Raises:
        RollbackFailed: There is no previous revision (nothing changed), AWS refused a call
            or could not be reached, or the service was updated but did not become stable
            within ``timeout``.
    """
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    what = _ecs_what(cluster, service)
    with _aws_errors(what):
        current = _current_task_definition(ecs, cluster, service)
        previous = _previous_revision(ecs, current)
        if previous is None:
            family, _ = _family_revision(current)
            raise RollbackFailed(
                f"{what} runs {task_definition_name(current)} and no earlier ACTIVE revision "
                f"of '{family}' exists: nothing to roll back to"
            )
        ecs.update_service(cluster=cluster, service=service, taskDefinition=previous)
    change = f"{task_definition_name(current)} -> {task_definition_name(previous)}"
    # The waiter checks at once, then every `delay` seconds: the last check lands within
    # the timeout.
    delay = max(1, min(MAX_WAITER_DELAY, int(seconds // 10)))
    attempts = int(seconds // delay) + 1
    with _aws_errors(f"{what}: updated {change} but could not check that it is stable"):
        try:
            ecs.get_waiter("services_stable").wait(
                cluster=cluster,
                services=[service],
                WaiterConfig={"Delay": delay, "MaxAttempts": attempts},
            )
        except WaiterError as error:
            raise RollbackFailed(
                f"{what}: updated {change} but it was not stable within {seconds:g}s "
                f"({error.kwargs.get('reason', error)})"
            ) from error
    return f"{what}: {change}, stable"


def _current_task_definition(ecs: Any, cluster: str, service: str) -> str:
    answer = ecs.describe_services(cluster=cluster, services=[service])
    services = [s for s in answer.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        reasons = ", ".join(f.get("reason", "?") for f in answer.get("failures", []))
        raise RollbackFailed(f"{_ecs_what(cluster, service)} not found ({reasons or 'INACTIVE'})")
    task_definition: str = services[0]["taskDefinition"]
    return task_definition


def _previous_revision(ecs: Any, current: str) -> str | None:
    family, revision = _family_revision(current)
    # familyPrefix is a prefix ('web' also lists 'web-worker'): keep the exact family.
    earlier: list[tuple[int, str]] = []
    for page in ecs.get_paginator("list_task_definitions").paginate(
        familyPrefix=family, status="ACTIVE"
    ):
        for arn in page.get("taskDefinitionArns", []):
            other_family, other_revision = _family_revision(arn)
            if other_family == family and other_revision < revision:
                earlier.append((other_revision, arn))
    return max(earlier)[1] if earlier else None


def _family_revision(task_definition: str) -> tuple[str, int]:
    """``arn:aws:ecs:...:task-definition/web:3`` (or ``web:3``) -> ``("web", 3)``."""
    family, _, revision = task_definition.rsplit("/", 1)[-1].rpartition(":")
    if not family or not revision.isdigit():
        raise RollbackFailed(f"cannot read the revision of task definition '{task_definition}'")
    return family, int(revision)


def task_definition_name(task_definition: str) -> str:
    """`family:revision` of a task definition ARN (as the AWS console shows it)."""
    return task_definition.rsplit("/", 1)[-1]


def _ecs_what(cluster: str, service: str) -> str:
    return f"ECS service '{service}' in cluster '{cluster}'"


# --- Lambda --------------------------------------------------------------------------------


def previous_lambda_version(lmb: Any, function: str, alias: str) -> str | None:
    """The published version a Lambda alias pointed to before its current one.

    That is the highest published version below the alias's current version; an alias on
    ``$LATEST`` counts as newer than every published version.

    Args:
        lmb: A boto3 Lambda client.
        function: The function name or ARN.
        alias: The alias name.

    Returns:
        The version number as a string, or None when no lower version is published.

    Raises:
        RollbackFailed: The function or alias does not exist, or AWS refused a call or could
            not be reached.
    """
    with _aws_errors(_lambda_what(function, alias)):
        current = lmb.get_alias(FunctionName=function, Name=alias)["FunctionVersion"]
        return _previous_version(lmb, function, current)


def rollback_lambda(lmb: Any, *, function: str, alias: str) -> str:
    """Point a Lambda alias back at what it served before the deploy, with all its traffic.

    An alias that splits traffic (a canary: its version plus weighted others) goes back to
    its own version alone, since that is what it served before the canary started. An alias
    without a split goes to the previous published version (``previous_lambda_version``).

    Args:
        lmb: A boto3 Lambda client.
        function: The function name or ARN.
        alias: The alias name.

    Returns:
        What was done, e.g. ``Lambda alias 'checkout:live': version 2 -> 1``.

    Raises:
        RollbackFailed: There is no previous version (nothing changed), or AWS refused a call
            or could not be reached.
    """
    what = _lambda_what(function, alias)
    with _aws_errors(what):
        described = lmb.get_alias(FunctionName=function, Name=alias)
        current = described["FunctionVersion"]
        canary = (described.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        if canary:
            lmb.update_alias(
                FunctionName=function,
                Name=alias,
                FunctionVersion=current,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )
            stopped = ", ".join(sorted(canary))
            return f"{what}: canary to version {stopped} stopped, all traffic on version {current}"
        previous = _previous_version(lmb, function, current)
        if previous is None:
            raise RollbackFailed(
                f"{what} is at version {current} and no earlier version is published: "
                "nothing to roll back to"
            )
        lmb.update_alias(
            FunctionName=function,
            Name=alias,
            FunctionVersion=previous,
        )
    return f"{what}: version {current} -> {previous}"


def _previous_version(lmb: Any, function: str, current: str) -> str | None:
    published: list[int] = []
    for page in lmb.get_paginator("list_versions_by_function").paginate(FunctionName=function):
        published.extend(
            int(v["Version"]) for v in page.get("Versions", []) if v["Version"].isdigit()
        )
    ceiling = None if current == LATEST else int(current)
    earlier = [v for v in published if ceiling is None or v < ceiling]
    return str(max(earlier)) if earlier else None


def _lambda_what(function: str, alias: str) -> str:
    return f"Lambda alias '{function}:{alias}'"
