"""Kubernetes as kubectl sees it: rollout status and rollout undo, as pure functions.

``rollout_status`` judges a Deployment the way ``kubectl rollout status`` does
(``DeploymentStatusViewer.Status`` in kubectl's ``pkg/polymorphichelpers/rollout_status.go``)
and returns kubectl's own sentence. ``plan_undo`` / ``undo_patch`` compute what
``kubectl rollout undo`` sends (``DeploymentRollbacker.Rollback`` in ``rollback.go``): the
ReplicaSet of the previous revision, its pod template without the ``pod-template-hash`` label,
and the JSON patch that puts that template and its annotations back on the Deployment.
The deployment controller then finds the old ReplicaSet again and gives it the next revision.

Objects are plain dictionaries in the API's JSON shape (camelCase keys, as served by the API
server or as ``ApiClient.sanitize_for_serialization`` gives them); missing fields read as the
zero value, as they do when Go decodes them.

``api_client`` builds a client for the configured cluster.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
# Deployment annotations ``rollout undo`` keeps from the Deployment rather than copying them
# from the ReplicaSet (kubectl's ``annotationsToSkip``).
ROLLBACK_SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)

Object = Mapping[str, Any]

# The kubeconfig loaders carry no annotations.
_new_client_from_config = cast(
    "Callable[..., k8s_client.ApiClient]", k8s_config.new_client_from_config
)
_load_incluster_config = cast("Callable[..., None]", k8s_config.load_incluster_config)


class KubeConfigError(Exception):
    """No usable cluster configuration (no kubeconfig, a bad one, an unknown context)."""


class RollbackError(Exception):
    """``kubectl rollout undo`` would refuse; the message is kubectl's."""


# --- client --------------------------------------------------------------------------------


def api_client(
    context: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    retries: int = 0,
) -> k8s_client.ApiClient:
    """A client for the cluster kubectl would talk to.

    The kubeconfig named by ``KUBECONFIG`` (several paths joined by ``os.pathsep`` are merged)
    or else ``~/.kube/config``, at ``context`` or its current context; with neither, the
    in-cluster service account.

    Args:
        context: A kubeconfig context; None for the current one.
        environ: Where to read ``KUBECONFIG``, ``HOME`` and ``KUBERNETES_SERVICE_HOST``;
            defaults to ``os.environ``. (The in-cluster loader itself reads ``os.environ``
            and the service account's files.)
        retries: How often urllib3 retries a failed request. 0 (the default) makes a
            request's ``_request_timeout`` the whole time it can take.

    Returns:
        A new ``ApiClient``; close it (or use it as a context manager) when done.

    Raises:
        KubeConfigError: There is no usable configuration.
    """
    env = os.environ if environ is None else environ
    configuration = type.__call__(k8s_client.Configuration)  # not a copy of a global default
    configuration.retries = retries
    named = env.get("KUBECONFIG", "")
    paths = [Path(p).expanduser() for p in named.split(os.pathsep) if p]
    if named and not any(p.is_file() for p in paths):
        raise KubeConfigError(f"KUBECONFIG names no kubeconfig file that exists: {named}")
    if not paths:
        home = env.get("HOME")
        default = Path(home, ".kube", "config") if home else Path("~/.kube/config").expanduser()
        paths = [default] if default.is_file() else []
    try:
        if paths:
            return _new_client_from_config(
                config_file=os.pathsep.join(str(p) for p in paths),
                context=context or _current_context(paths),
                persist_config=False,
                client_configuration=configuration,
            )
        if not env.get("KUBERNETES_SERVICE_HOST"):
            raise KubeConfigError("no kubeconfig (set KUBECONFIG) and not running in a cluster")
        if context:
            raise KubeConfigError(f"context {context!r} needs a kubeconfig (set KUBECONFIG)")
        _load_incluster_config(client_configuration=configuration)
    except ConfigException as error:
        raise KubeConfigError(f"bad Kubernetes configuration: {error}") from None
    return k8s_client.ApiClient(configuration)


def _current_context(paths: list[Path]) -> str | None:
    """kubectl's current context: the first file that sets one wins. (The Python client lets
    the last one win, which would point the bot at a different cluster than kubectl.)"""
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text()) if path.is_file() else None
        except (OSError, yaml.YAMLError):
            continue  # the client's loader reports a broken file itself
        if isinstance(data, dict) and data.get("current-context"):
            return str(data["current-context"])
    return None


# --- rollout status ------------------------------------------------------------------------


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def revision(obj: Object) -> int:
    """The ``deployment.kubernetes.io/revision`` of a Deployment or ReplicaSet; 0 when unset.

    Raises:
        ValueError: The annotation is not an integer.
    """
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    return 0 if value is None else int(value)


def rollout_status(deployment: Object, expected_revision: int = 0) -> tuple[bool, str]:
    """Judge a Deployment's rollout exactly as ``kubectl rollout status`` does.

    Args:
        deployment: The Deployment as the API serves it.
        expected_revision: kubectl's ``--revision``: when positive, the rollout must be of
            that revision.

    Returns:
        ``(done, sentence)``: done only for ``deployment "NAME" successfully rolled out``;
        otherwise kubectl's "Waiting for ..." line, or the text of its error (for a rollout
        past its progress deadline: ``deployment "NAME" exceeded its progress deadline``).
        The sentence has no trailing newline.
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "")
    if expected_revision > 0:
        try:
            running = revision(deployment)
        except ValueError as error:
            return False, f'cannot get the revision of deployment "{name}": {error}'
        if running != expected_revision:
            return False, (
                f"desired revision ({expected_revision}) is different from the running "
                f"revision ({running})"
            )
    if _int(meta.get("generation")) > _int(status.get("observedGeneration")):
        return False, "Waiting for deployment spec update to be observed..."
    progressing = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None
    )
    if progressing is not None and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED:
        return False, f'deployment "{name}" exceeded its progress deadline'
    replicas = spec.get("replicas")
    updated = _int(status.get("updatedReplicas"))
    prefix = f'Waiting for deployment "{name}" rollout to finish: '
    if replicas is not None and updated < int(replicas):
        return False, f"{prefix}{updated} out of {replicas} new replicas have been updated..."
    current = _int(status.get("replicas"))
    if current > updated:
        return False, f"{prefix}{current - updated} old replicas are pending termination..."
    available = _int(status.get("availableReplicas"))
    if available < updated:
        return False, f"{prefix}{available} of {updated} updated replicas are available..."
    return True, f'deployment "{name}" successfully rolled out'


# --- rollout undo --------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionTemplate:
    """A revision to roll back to.

    Attributes:
        revision: Its ``deployment.kubernetes.io/revision``.
        replicaset: The name of the ReplicaSet that holds it.
        template: Its pod template, without the ``pod-template-hash`` label.
        annotations: The ReplicaSet's annotations.
    """

    revision: int
    replicaset: str
    template: dict[str, Any]
    annotations: dict[str, str]


@dataclass(frozen=True)
class UndoPlan:
    """What ``kubectl rollout undo`` would do.

    Attributes:
        target: The revision rolled back to.
        patch: The JSON patch (``application/json-patch+json``) to send, or None when the
            Deployment already has that template.
        message: kubectl's report: ``rolled back`` or
            ``skipped rollback (current template already matches revision N)``.
    """

    target: RevisionTemplate
    patch: list[dict[str, Any]] | None
    message: str


def _semantic(value: Any) -> Any:
    """Drop None, empty maps and empty lists: Go's semantic equality treats a nil map or
    slice as equal to an empty one, and absent fields decode to nil."""
    if isinstance(value, Mapping):
        cleaned = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _without_hash(template: Object) -> dict[str, Any]:
    copied: dict[str, Any] = copy.deepcopy(dict(template))
    labels = (copied.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return copied


def equal_ignore_hash(template1: Object, template2: Object) -> bool:
    """Whether two pod templates are equal apart from the ``pod-template-hash`` label."""
    return bool(_semantic(_without_hash(template1)) == _semantic(_without_hash(template2)))


def _selects(selector: Object | None, labels: Mapping[str, str]) -> bool:
    """``metav1.LabelSelectorAsSelector(selector).Matches(labels)``; nil selects nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator = requirement.get("key"), requirement.get("operator")
        values = requirement.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _controller_uid(obj: Object) -> str | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


def _created(obj: Object) -> tuple[datetime, str]:
    meta = obj.get("metadata") or {}
    stamp = meta.get("creationTimestamp")
    if isinstance(stamp, str):
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    elif isinstance(stamp, datetime):
        when = stamp
    else:
        when = datetime.min.replace(tzinfo=UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when, str(meta.get("name", ""))


def deployment_replicasets(deployment: Object, replicasets: Iterable[Object]) -> list[Object]:
    """The Deployment's ReplicaSets in kubectl's order: old ones oldest first, the new one last.

    A ReplicaSet is the Deployment's when the Deployment's selector matches its labels and
    its controller ownerReference is the Deployment (kubectl's ``GetAllReplicaSets``). The new
    one is the oldest whose template equals the Deployment's (``FindNewReplicaSet``).
    """
    uid = (deployment.get("metadata") or {}).get("uid")
    selector = (deployment.get("spec") or {}).get("selector")
    owned = sorted(
        (
            rs
            for rs in replicasets
            if _selects(selector, (rs.get("metadata") or {}).get("labels") or {})
            and _controller_uid(rs) == uid
        ),
        key=_created,
    )
    template = (deployment.get("spec") or {}).get("template") or {}
    new = next(
        (
            rs
            for rs in owned
            if equal_ignore_hash((rs.get("spec") or {}).get("template") or {}, template)
        ),
        None,
    )
    return [rs for rs in owned if rs is not new] + ([new] if new is not None else [])


def _revision_replicaset(
    deployment: Object, replicasets: Iterable[Object], to_revision: int
) -> tuple[int, Object]:
    """kubectl's ``deploymentRevision``: the RS of ``to_revision``, or for 0 the second newest."""
    if to_revision < 0:
        raise RollbackError(f"unable to find specified revision {to_revision} in history")
    latest: tuple[int, Object] | None = None
    previous: tuple[int, Object] | None = None
    for rs in deployment_replicasets(deployment, replicasets):
        try:
            number = revision(rs)
        except ValueError:
            continue  # kubectl skips unparsable revisions
        if to_revision == 0:
            if latest is None or latest[0] < number:
                previous, latest = latest, (number, rs)
            elif previous is None or previous[0] < number:
                previous = (number, rs)
        elif number == to_revision:
            return number, rs
    if to_revision > 0:
        raise RollbackError(f"unable to find specified revision {to_revision} in history")
    if previous is None:
        name = (deployment.get("metadata") or {}).get("name", "")
        raise RollbackError(f'no rollout history found for deployment "{name}"')
    return previous


def previous_revision_template(
    deployment: Object, replicasets: Iterable[Object], *, to_revision: int = 0
) -> RevisionTemplate:
    """The revision ``kubectl rollout undo [--to-revision=N]`` would restore.

    Args:
        deployment: The Deployment.
        replicasets: ReplicaSets of its namespace (others are ignored, as kubectl does).
        to_revision: A revision number, or 0 for the one before the newest.

    Returns:
        The revision, its ReplicaSet's name and annotations, and its pod template without the
        ``pod-template-hash`` label.

    Raises:
        RollbackError: There is no such revision (kubectl's message).
    """
    number, rs = _revision_replicaset(deployment, replicasets, to_revision)
    meta = rs.get("metadata") or {}
    return RevisionTemplate(
        revision=number,
        replicaset=str(meta.get("name", "")),
        template=_without_hash((rs.get("spec") or {}).get("template") or {}),
        annotations=dict(meta.get("annotations") or {}),
    )


def plan_undo(
    deployment: Object, replicasets: Iterable[Object], *, to_revision: int = 0
) -> UndoPlan:
    """What ``kubectl rollout undo`` does, step by step as kubectl takes them.

    Find the revision; refuse a paused Deployment; skip when the Deployment's template
    already equals the revision's; otherwise build kubectl's JSON patch, which replaces
    ``/spec/template`` with the revision's template and ``/metadata/annotations`` with the
    Deployment's own skip-listed annotations (revision, last-applied-configuration ...) plus
    every other annotation of the ReplicaSet.

    Args:
        deployment: The Deployment.
        replicasets: ReplicaSets of its namespace.
        to_revision: A revision number, or 0 for the one before the newest.

    Returns:
        The plan; its ``patch`` is None when there is nothing to do.

    Raises:
        RollbackError: No such revision, or the Deployment is paused (kubectl's messages).
    """
    target = previous_revision_template(deployment, replicasets, to_revision=to_revision)
    spec = deployment.get("spec") or {}
    if spec.get("paused"):
        # Released kubectl (1.31-1.33) prints this; newer sources add "deployment/NAME".
        raise RollbackError(
            "you cannot rollback a paused deployment; resume it first with "
            "'kubectl rollout resume' and try again"
        )
    if equal_ignore_hash(target.template, spec.get("template") or {}):
        # kubectl names the revision it was asked for: 0 for a plain ``rollout undo``.
        message = f"skipped rollback (current template already matches revision {to_revision})"
        return UndoPlan(target, None, message)
    current = (deployment.get("metadata") or {}).get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in ROLLBACK_SKIPPED_ANNOTATIONS}
    annotations.update(
        {k: v for k, v in target.annotations.items() if k not in ROLLBACK_SKIPPED_ANNOTATIONS}
    )
    patch = [
        {"op": "replace", "path": "/spec/template", "value": copy.deepcopy(target.template)},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    return UndoPlan(target, patch, "rolled back")


def undo_patch(
    deployment: Object, replicasets: Iterable[Object], *, to_revision: int = 0
) -> list[dict[str, Any]] | None:
    """The JSON patch ``kubectl rollout undo`` sends, or None when it would skip.

    See ``plan_undo``; the patch goes to the Deployment as ``application/json-patch+json``.

    Raises:
        RollbackError: No such revision, or the Deployment is paused.
    """
    return plan_undo(deployment, replicasets, to_revision=to_revision).patch
