"""Kubernetes probes: a Deployment's rollout, the pods a selector matches, the cluster's nodes.

The cluster is the one kubectl would use: ``KUBECONFIG`` (from the probe context's
environment) or ``~/.kube/config`` at the probe's ``context``, else the in-cluster service
account. Each check makes one API request bounded by the probe's timeout, with no retries,
so a hung API server costs the timeout and nothing more.

``rollout`` passes exactly when ``kubectl rollout status`` would report success, and its
summary is kubectl's own sentence (see ``bot.integrations.kubernetes.rollout_status``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from bot.config.probe_specs import KubernetesProbe
from bot.integrations import kubernetes as kube
from bot.integrations.probes.base import ProbeConfigError, ProbeContext, ProbeOutcome

LISTED = 3  # names shown in a summary before "and N more"


def check(spec: KubernetesProbe, ctx: ProbeContext) -> ProbeOutcome:
    """Run the Kubernetes check that ``spec.check`` names.

    Args:
        spec: The probe as configured.
        ctx: Where ``KUBECONFIG`` (and ``HOME``) are read.

    Returns:
        The outcome; an unknown Deployment, an unreachable or slow API server and an API
        error are failed outcomes that say so.

    Raises:
        ProbeConfigError: There is no usable cluster configuration.
    """
    timeout = spec.timeout.total_seconds()
    try:
        api = kube.api_client(spec.context, environ=ctx.environ)
    except kube.KubeConfigError as error:
        raise ProbeConfigError(str(error)) from None
    checks: dict[str, Callable[[k8s_client.ApiClient, KubernetesProbe, float], ProbeOutcome]] = {
        "rollout": _rollout,
        "pods": _pods,
        "nodes": _nodes,
    }
    server = str(api.configuration.host)
    try:
        with api:
            return checks[spec.check](api, spec, timeout)
    except ApiException as error:
        return _api_error(error, spec)
    except urllib3.exceptions.HTTPError as error:
        return _unreachable(error, server, timeout)


def _rollout(api: k8s_client.ApiClient, spec: KubernetesProbe, timeout: float) -> ProbeOutcome:
    name = str(spec.deployment)
    deployment = k8s_client.AppsV1Api(api).read_namespaced_deployment(
        name, spec.namespace, _request_timeout=timeout
    )
    to_json = cast("Callable[[object], dict[str, Any]]", api.sanitize_for_serialization)
    served = to_json(deployment)  # the API's JSON shape, which rollout_status reads
    done, sentence = kube.rollout_status(served)
    status = served.get("status") or {}
    progressing: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    detail = (
        f"deployment {spec.namespace}/{name}: generation {served['metadata'].get('generation')}, "
        f"observed {status.get('observedGeneration', 0)}; replicas "
        f"{status.get('replicas', 0)}, updated {status.get('updatedReplicas', 0)}, "
        f"available {status.get('availableReplicas', 0)} of "
        f"{served['spec'].get('replicas')} wanted"
    )
    if progressing:
        detail += f"\nProgressing: {progressing.get('reason')}: {progressing.get('message', '')}"
    return ProbeOutcome(done, sentence, detail)


def _pods(api: k8s_client.ApiClient, spec: KubernetesProbe, timeout: float) -> ProbeOutcome:
    pods = (
        k8s_client.CoreV1Api(api)
        .list_namespaced_pod(spec.namespace, label_selector=spec.selector, _request_timeout=timeout)
        .items
    )
    where = f"{spec.selector} in namespace {spec.namespace}"
    if not pods:
        return ProbeOutcome(False, f"no pods match {where}")
    unready = [(_name(p.metadata), _why_not(p.status)) for p in pods if not _ready(p.status)]
    if not unready:
        return ProbeOutcome(True, f"{len(pods)}/{len(pods)} pods ready ({where})")
    summary = f"{len(unready)} of {len(pods)} pods not ready: {_names(unready)}"
    return ProbeOutcome(False, summary, _lines(unready))


def _nodes(api: k8s_client.ApiClient, spec: KubernetesProbe, timeout: float) -> ProbeOutcome:
    nodes = k8s_client.CoreV1Api(api).list_node(_request_timeout=timeout).items
    if not nodes:
        return ProbeOutcome(False, "the cluster has no nodes")
    unready = [(_name(n.metadata), _why_not(n.status)) for n in nodes if not _ready(n.status)]
    if not unready:
        return ProbeOutcome(True, f"{len(nodes)}/{len(nodes)} nodes Ready")
    summary = f"{len(unready)} of {len(nodes)} nodes not Ready: {_names(unready)}"
    return ProbeOutcome(False, summary, _lines(unready))


def _name(meta: k8s_client.V1ObjectMeta | None) -> str:
    return str(meta.name) if meta is not None else "?"


def _ready_condition(status: Any) -> Any:
    conditions = (status.conditions if status is not None else None) or []
    return next((c for c in conditions if c.type == "Ready"), None)


def _ready(status: Any) -> bool:
    condition = _ready_condition(status)
    return condition is not None and condition.status == "True"


def _why_not(status: Any) -> str:
    condition = _ready_condition(status)
    if condition is None:
        phase = getattr(status, "phase", None)
        return f"no Ready condition (phase {phase})" if phase else "no Ready condition"
    return str(condition.reason or f"Ready={condition.status}")


def _names(items: Sequence[tuple[str, str]]) -> str:
    shown = ", ".join(f"{name} ({why})" for name, why in items[:LISTED])
    more = len(items) - LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def _lines(items: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{name}: {why}" for name, why in items)


def _api_error(error: ApiException, spec: KubernetesProbe) -> ProbeOutcome:
    message = str(error.reason or "")
    with contextlib.suppress(ValueError, AttributeError):  # a Status document, usually
        message = json.loads(error.body or "{}").get("message") or message
    if error.status == 404 and spec.check == "rollout":
        return ProbeOutcome(
            False,
            f'deployment "{spec.deployment}" not found in namespace "{spec.namespace}"',
            message,
        )
    if error.status in (401, 403):
        return ProbeOutcome(False, f"Kubernetes API refused access ({error.status}): {message}")
    return ProbeOutcome(False, f"Kubernetes API error {error.status}: {message}", str(error.body))


def _unreachable(error: urllib3.exceptions.HTTPError, server: str, timeout: float) -> ProbeOutcome:
    reason = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    if isinstance(reason, urllib3.exceptions.NewConnectionError):  # refused, no route ...
        cause = reason.__context__ or reason
        return ProbeOutcome(
            False, f"Kubernetes API at {server} is unreachable: {cause}", repr(error)
        )
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return ProbeOutcome(False, f"Kubernetes API at {server} did not answer within {timeout:g}s")
    return ProbeOutcome(False, f"Kubernetes API at {server} is unreachable: {reason}", repr(error))
