"""Carrying out deploy steps: ``kubectl set image`` and its rollout, a command and its output.

Each step is applied once (the caller claims it first) and, for Kubernetes, then watched:
:func:`rollout_progress` only reads, so it may run any number of times, on any replica.
Errors are :class:`StepError` with one line saying what went wrong. Nothing here knows about
sessions, Slack or the database.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.integrations.kubernetes import KubeConfigError, Object, api_client, rollout_status
from bot.ops.redact import StepEnvironment

CHANGE_CAUSE = "kubernetes.io/change-cause"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
OUTPUT_LINES = 5  # lines per message in the thread
OUTPUT_SECONDS = 3.0  # or sooner, when a command is slow to print


class StepError(Exception):
    """A step failed; the message says how, in one line."""


def set_image_patch(
    deployment: Object, images: Mapping[str, str], cause: str
) -> dict[str, Any] | None:
    """The strategic-merge patch ``kubectl set image deployment/NAME c=IMAGE`` sends (its
    two-way merge of the object before and after), with ``cause`` as the change-cause.

    ``None`` when every named container already runs its image (kubectl sends nothing then).

    Raises:
        StepError: a named container is not in the pod template (kubectl refuses too).
    """
    name = deployment.get("metadata", {}).get("name", "?")
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    patch: dict[str, Any] = {}
    found: set[str] = set()
    for field in ("initContainers", "containers"):
        containers = pod.get(field) or []
        changed = []
        for container in containers:
            wanted = images.get(container["name"])
            if wanted is None:
                continue
            found.add(container["name"])
            if container.get("image") != wanted:
                changed.append({"image": wanted, "name": container["name"]})
        if changed:
            patch[f"$setElementOrder/{field}"] = [{"name": c["name"]} for c in containers]
            patch[field] = changed
    missing = sorted(set(images) - found)
    if missing:
        raise StepError(f'deployment/{name}: unable to find container named "{missing[0]}"')
    if not patch:
        return None
    return {
        "metadata": {"annotations": {CHANGE_CAUSE: cause}},
        "spec": {"template": {"spec": patch}},
    }


@dataclass(frozen=True)
class KubeTarget:
    """Where a Kubernetes step acts (the config's step, templated)."""

    deployments: tuple[str, ...]
    images: Mapping[str, str]
    namespace: str
    context: str | None


def set_images(target: KubeTarget, cause: str, *, environ: Mapping[str, str]) -> str:
    """Patch each Deployment's images; one line saying what changed."""
    from kubernetes import client as k8s

    done = []
    try:
        with api_client(target.context, environ=environ) as api:
            apps = k8s.AppsV1Api(api)
            for name in target.deployments:
                deployment = _read(apps.read_namespaced_deployment, name, target.namespace)
                patch = set_image_patch(deployment, target.images, cause)
                if patch is None:
                    done.append(f"deployment/{name} already runs it")
                    continue
                apps.patch_namespaced_deployment(
                    name, target.namespace, body=patch, _content_type=STRATEGIC_MERGE
                )
                done.append(f"deployment/{name} image updated")
    except KubeConfigError as error:
        raise StepError(str(error)) from error
    except k8s.ApiException as error:
        raise StepError(f"the API answered {error.status} {error.reason}") from error
    images = ", ".join(f"{c}={i}" for c, i in target.images.items())
    return f"{'; '.join(done)} ({images} -n {target.namespace})"


def rollout_progress(target: KubeTarget, *, environ: Mapping[str, str]) -> tuple[bool, str]:
    """Whether every Deployment has rolled out, as ``kubectl rollout status`` judges it, and
    its sentence (the first one not done).

    Raises:
        StepError: a rollout exceeded its progress deadline, or the API failed.
    """
    from kubernetes import client as k8s

    try:
        with api_client(target.context, environ=environ) as api:
            apps = k8s.AppsV1Api(api)
            said = []
            for name in target.deployments:
                deployment = _read(apps.read_namespaced_deployment, name, target.namespace)
                done, status = rollout_status(deployment)
                if "exceeded its progress deadline" in status:
                    raise StepError(status)
                if not done:
                    return False, status
                said.append(status)
            return True, "; ".join(said)
    except KubeConfigError as error:
        raise StepError(str(error)) from error
    except k8s.ApiException as error:
        raise StepError(f"the API answered {error.status} {error.reason}") from error


def _read(call: Any, *args: str) -> dict[str, Any]:
    response = call(*args, _preload_content=False, _request_timeout=30)
    data: dict[str, Any] = json.loads(response.data)
    return data


def run_command(
    argv: Sequence[str],
    env: StepEnvironment,
    timeout: float,
    emit: Callable[[list[str]], None],
    *,
    lines: int = OUTPUT_LINES,
    seconds: float = OUTPUT_SECONDS,
) -> str:
    """Run ``argv`` (no shell) with ``env`` only; hand its output, redacted, to ``emit`` a few
    lines at a time (every ``lines`` lines, or ``seconds`` after the first line waiting).

    Returns:
        ``exit 0`` and the last line it printed.

    Raises:
        StepError: it could not start, timed out (it is killed) or exited non-zero.
    """
    what = " ".join(argv)
    try:
        process = subprocess.Popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as error:
        raise StepError(f"{what}: could not run: {error.strerror}") from None
    assert process.stdout is not None
    out: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            out.put(line.rstrip("\n"))
        out.put(None)

    threading.Thread(target=read, name="step-output", daemon=True).start()
    deadline = time.monotonic() + timeout
    pending: list[str] = []
    last = ""
    since = 0.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            process.kill()
            process.wait()
            _flush(pending, env, emit)
            raise StepError(f"{what}: timed out after {timeout:g} s")
        try:
            line = out.get(timeout=min(left, seconds))
        except queue.Empty:
            line = ""
            if pending and time.monotonic() - since >= seconds:
                _flush(pending, env, emit)
            continue
        if line is None:
            break
        if not pending:
            since = time.monotonic()
        pending.append(line)
        if line.strip():
            last = line
        if len(pending) >= lines:
            _flush(pending, env, emit)
    _flush(pending, env, emit)
    code = process.wait()
    tail = env.redact(last).strip()[:200]
    if code != 0:
        raise StepError(f"{what}: exit {code}" + (f": {tail}" if tail else ""))
    return f"{what}: exit 0" + (f": {tail}" if tail else "")


def _flush(pending: list[str], env: StepEnvironment, emit: Callable[[list[str]], None]) -> None:
    if pending:
        # Redacted whole (the shapes the redactor knows may span a cut between lines).
        emit(env.redact("\n".join(pending)).split("\n"))
        pending.clear()
