"""Carrying out one rollback target: Kubernetes undo, ECS and Lambda back one step, a command.

Each ``run_*`` returns one line saying what was done, or raises :class:`RollbackFailed` with
one line saying what went wrong. Nothing here knows about sessions, Slack or the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from bot.config.schema import CommandRollback, EcsRollback, KubernetesRollback, LambdaRollback
from bot.integrations.aws_rollback import RollbackFailed, rollback_ecs, rollback_lambda
from bot.integrations.kubernetes import (
    KubeConfigError,
    RollbackError,
    api_client,
    plan_undo,
    rollout_status,
)
from bot.ops.redact import step_environment

RollbackTarget = KubernetesRollback | EcsRollback | LambdaRollback | CommandRollback
POLL_SECONDS = 1.0


def run_target(target: RollbackTarget, *, environ: Mapping[str, str] | None = None) -> str:
    """Carry out one target; its own timeout bounds it."""
    env = os.environ if environ is None else environ
    if isinstance(target, KubernetesRollback):
        return run_kubernetes(target, environ=env)
    if isinstance(target, EcsRollback):
        return run_ecs(target)
    if isinstance(target, LambdaRollback):
        return run_lambda(target)
    return run_command(target, environ=env)


def run_kubernetes(target: KubernetesRollback, *, environ: Mapping[str, str]) -> str:
    """``kubectl rollout undo``, then wait as ``kubectl rollout status`` would judge it."""
    from kubernetes import client as k8s

    what = f"deployment/{target.deployment} -n {target.namespace}"
    deadline = time.monotonic() + target.timeout.total_seconds()
    try:
        with api_client(target.context, environ=environ) as api:
            apps = k8s.AppsV1Api(api)
            deployment = _read(apps.read_namespaced_deployment, target.deployment, target.namespace)
            replicasets = _read(apps.list_namespaced_replica_set, target.namespace)["items"]
            plan = plan_undo(deployment, replicasets)
            if plan.patch is None:
                return f"{what}: nothing to do, {plan.message}"
            apps.patch_namespaced_deployment(target.deployment, target.namespace, body=plan.patch)
            while True:
                deployment = _read(
                    apps.read_namespaced_deployment, target.deployment, target.namespace
                )
                done, status = rollout_status(deployment)
                if done:
                    return f"{what}: rolled back to revision {plan.target.revision}; {status}"
                if "exceeded its progress deadline" in status or time.monotonic() > deadline:
                    raise RollbackFailed(
                        f"{what}: undone, but the rollout did not finish: {status}"
                    )
                time.sleep(POLL_SECONDS)
    except (RollbackError, KubeConfigError) as error:
        raise RollbackFailed(f"{what}: {error}") from error
    except k8s.ApiException as error:
        raise RollbackFailed(f"{what}: the API answered {error.status} {error.reason}") from error


def _read(call: Any, *args: str) -> dict[str, Any]:
    """A resource as plain JSON, as kubectl sees it (bot.integrations.kubernetes takes dicts)."""
    response = call(*args, _preload_content=False, _request_timeout=30)
    data: dict[str, Any] = json.loads(response.data)
    return data


def run_ecs(target: EcsRollback) -> str:
    import boto3

    ecs = boto3.session.Session().client("ecs", region_name=target.region)
    return rollback_ecs(ecs, cluster=target.cluster, service=target.service, timeout=target.timeout)


def run_lambda(target: LambdaRollback) -> str:
    import boto3
    from botocore.config import Config

    seconds = target.timeout.total_seconds()
    lmb = boto3.session.Session().client(
        "lambda",
        region_name=target.region,
        config=Config(connect_timeout=seconds, read_timeout=seconds, retries={"max_attempts": 2}),
    )
    return rollback_lambda(lmb, function=target.function, alias=target.alias)


def run_command(target: CommandRollback, *, environ: Mapping[str, str]) -> str:
    """A configured argv (never a shell, never text from Slack), with only the named variables.

    What it printed is reported with those variables' values masked (and every known shape of
    secret): a command that echoes its token does not put it in Slack or the audit log.
    """
    what = " ".join(target.argv)
    env = step_environment(target.env, environ)
    try:
        done = subprocess.run(
            list(target.argv),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=target.timeout.total_seconds(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RollbackFailed(f"{what}: timed out after {target.timeout}") from None
    except OSError as error:
        raise RollbackFailed(f"{what}: could not run: {error.strerror}") from None
    # Redacted whole, before it is cut: a cut would break the shapes the redactor knows.
    last = env.redact(done.stdout or done.stderr).strip().splitlines()[-1:] or [""]
    if done.returncode != 0:
        raise RollbackFailed(f"{what}: exit {done.returncode}: {last[0][:200]}")
    return f"{what}: exit 0" + (f": {last[0][:200]}" if last[0] else "")
