"""What a Kubernetes cluster does besides serving the API: defaults, selectors and controllers.

Used by the fake API server in :mod:`sandbox.kube`. Everything here works on plain JSON
dictionaries, the shape the API server stores and serves, and follows the upstream code:

- ``apply_defaults``: the defaulting the API server applies to apps/v1 Deployments and
  ReplicaSets and core/v1 Pods (``pkg/apis/*/v1/defaults.go``).
- ``matches_selector`` / ``parse_label_selector``: ``metav1.LabelSelector`` and the
  ``labelSelector`` query string syntax (``k8s.io/apimachinery/pkg/labels``).
- ``DeploymentController.reconcile``: the deployment controller
  (``pkg/controller/deployment``: ``getNewReplicaSet``, ``rolloutRolling``/``rolloutRecreate``,
  ``calculateStatus``, ``syncRolloutStatus``, ``cleanupDeployment``) together with the
  ReplicaSet controller and the kubelet (pods created, deleted, made ready), run step by step
  until nothing changes. It runs only when called (by a test, or by the sandbox's timer),
  so every state a test sees is one it asked for.

It deliberately shares no code with ``bot.integrations.kubernetes``: it is the cluster the
bot's judgement of rollouts is checked against, so it must not borrow that judgement.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
POD_TEMPLATE_HASH = "pod-template-hash"
# Deployment annotations the controller never copies onto its ReplicaSets
# (deployment_util.go annotationsToSkip).
SKIP_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
_MAX_STEPS = 50  # controller syncs per reconcile; a real rollout of a few pods needs < 10


# --- defaults ------------------------------------------------------------------------------


def apply_defaults(resource: str, obj: Obj) -> Obj:
    """Fill in what the API server defaults on write, in place.

    Args:
        resource: The plural resource name (``deployments``, ``replicasets``, ``pods``, ``nodes``).
        obj: The object as written by a client.

    Returns:
        The same object, defaulted.
    """
    spec = obj.setdefault("spec", {})
    if resource == "deployments":
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec.setdefault("template", {}))
    elif resource == "replicasets":
        spec.setdefault("replicas", 1)
        _default_template(spec.setdefault("template", {}))
    elif resource == "pods":
        _default_pod_spec(spec)
    return obj


def _default_template(template: Obj) -> None:
    template.setdefault("metadata", {})
    _default_pod_spec(template.setdefault("spec", {}))


def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("containers") or []:
        _default_container(container)
    for container in spec.get("initContainers") or []:
        _default_container(container)


def _default_container(container: Obj) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition("@")[0].partition(":")[2]
    latest = "@" not in image and tag in ("", "latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


# --- selectors -----------------------------------------------------------------------------

Requirement = Callable[[dict[str, str]], bool]


def matches_selector(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """Whether ``labels`` match a ``metav1.LabelSelector`` (matchLabels and matchExpressions).

    An empty selector matches everything (as for ReplicaSets and Deployments); a missing one
    matches nothing.
    """
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


_TERM = re.compile(
    r"""^\s*(?:
        (?P<not>!)\s*(?P<absent>[^\s=!(),]+)
      | (?P<key>[^\s=!(),]+)\s*(?:
            (?P<op>==|=|!=)\s*(?P<value>[^\s=!(),]*)
          | \s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
        )?
    )\s*$""",
    re.VERBOSE,
)


def parse_label_selector(text: str | None) -> Requirement:
    """A predicate for the ``labelSelector`` query string (``app=api,tier in (web,api),!canary``).

    Raises:
        ValueError: The selector does not parse.
    """
    requirements = [_parse_term(term) for term in _split_terms(text or "")]
    return lambda labels: all(requirement(labels) for requirement in requirements)


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def _parse_term(term: str) -> Requirement:
    match = _TERM.match(term)
    if not match:
        raise ValueError(f"unable to parse requirement: {term.strip()!r}")
    if match["absent"]:
        absent = match["absent"]
        return lambda labels: absent not in labels
    key = match["key"]
    if match["op"]:
        value, negate = match["value"], match["op"] == "!="
        return lambda labels: (labels.get(key) == value) != negate
    if match["setop"]:
        values = {v.strip() for v in match["values"].split(",") if v.strip()}
        if match["setop"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: key not in labels or labels[key] not in values
    return lambda labels: key in labels


def parse_field_selector(text: str | None) -> Callable[[Obj], bool]:
    """A predicate for ``fieldSelector`` (``metadata.name=api``, ``status.phase!=Running``)."""
    checks: list[tuple[list[str], str, bool]] = []
    for term in _split_terms(text or ""):
        match = re.fullmatch(r"\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if not match:
            raise ValueError(f"invalid field selector: {term.strip()!r}")
        checks.append((match[1].split("."), match[3], match[2] == "!="))

    def matches(obj: Obj) -> bool:
        for path, value, negate in checks:
            found: Any = obj
            for part in path:
                found = found.get(part) if isinstance(found, dict) else None
            if ("" if found is None else str(found)) == value and negate:
                return False
            if ("" if found is None else str(found)) != value and not negate:
                return False
        return True

    return matches


# --- templates -----------------------------------------------------------------------------


def semantic(value: Any) -> Any:
    """``value`` with ``None``, empty maps and empty lists dropped, as Go's semantic equality
    treats a nil map or slice like an empty one."""
    if isinstance(value, dict):
        cleaned = {k: semantic(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [semantic(v) for v in value]
    return value


def _without_hash(template: Obj) -> Obj:
    template = copy.deepcopy(template)
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop(POD_TEMPLATE_HASH, None)
    return template


def equal_ignore_hash(template1: Obj, template2: Obj) -> bool:
    """``EqualIgnoreHash``: pod templates equal apart from the pod-template-hash label."""
    return bool(semantic(_without_hash(template1)) == semantic(_without_hash(template2)))


def compute_hash(template: Obj, collision_count: int = 0) -> str:
    """A pod-template-hash in the controller's alphabet (FNV-32a, then ``SafeEncodeString``).

    Upstream hashes the Go struct dump; this hashes canonical JSON, so values differ from a
    real cluster's but keep their properties: stable for equal templates, distinct otherwise.
    """
    data = json.dumps(semantic(_without_hash(template)), sort_keys=True).encode()
    if collision_count:
        data += str(collision_count).encode()
    digest = 0x811C9DC5
    for byte in data:
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in str(digest))


def revision_of(obj: Obj) -> int | None:
    """The ``deployment.kubernetes.io/revision`` annotation (0 when absent, None when bad)."""
    value = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return None


def scaled_value(value: int | str | None, total: int, *, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an int, or a percentage of ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """``ResolveFenceposts``: (maxSurge, maxUnavailable) for a RollingUpdate deployment."""
    spec = deployment["spec"]
    rolling = spec.get("strategy", {}).get("rollingUpdate") or {}
    replicas = spec.get("replicas", 1)
    surge = scaled_value(rolling.get("maxSurge"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling(deployment: Obj) -> bool:
    return bool(deployment["spec"].get("strategy", {}).get("type") == "RollingUpdate")


def max_surge(deployment: Obj) -> int:
    """``MaxSurge``: 0 unless the strategy is RollingUpdate."""
    return fenceposts(deployment)[0] if _rolling(deployment) else 0


def max_unavailable(deployment: Obj) -> int:
    """``MaxUnavailable``: at most the replica count; 0 unless RollingUpdate."""
    replicas = int(deployment["spec"].get("replicas", 1))
    if not _rolling(deployment) or replicas == 0:
        return 0
    return min(fenceposts(deployment)[1], replicas)


# --- the controllers -----------------------------------------------------------------------


class Store(Protocol):
    """The fake API server's storage, as the controllers see it."""

    revision: int  # the last resourceVersion written; unchanged by no-op writes

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None: ...

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]: ...

    def create(self, resource: str, namespace: str | None, obj: Obj) -> Obj: ...

    def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj: ...

    def delete(self, resource: str, namespace: str | None, name: str) -> None: ...

    def new_name_suffix(self) -> str: ...

    def now(self) -> str: ...


def _by_creation(objs: Iterable[Obj]) -> list[Obj]:
    return sorted(objs, key=lambda o: (o["metadata"]["creationTimestamp"], o["metadata"]["name"]))


def _replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 0))


def _status(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0))


def _condition(status: Obj, kind: str) -> Obj | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _set_condition(status: Obj, kind: str, value: str, reason: str, message: str, now: str) -> None:
    """``SetDeploymentCondition``: keep lastTransitionTime when the status does not change."""
    current = _condition(status, kind)
    if current and current["status"] == value and current["reason"] == reason:
        return
    transition = current["lastTransitionTime"] if current and current["status"] == value else now
    condition = {
        "type": kind,
        "status": value,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
    others = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    status["conditions"] = [*others, condition]


def _complete(deployment: Obj, status: Obj) -> bool:
    """``DeploymentComplete``: every replica updated and available, the spec observed."""
    replicas = deployment["spec"].get("replicas", 1)
    return bool(
        status.get("updatedReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
        and status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
    )


def _is_ready(pod: Obj) -> bool:
    condition = _condition(pod.get("status") or {}, "Ready")
    return bool(condition and condition["status"] == "True")


class DeploymentController:
    """The deployment controller, the ReplicaSet controller and a kubelet, stepped by hand."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # The public steps --------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str, *, ready: bool | int = True) -> Obj:
        """Run the controllers until the deployment settles.

        Args:
            namespace: The deployment's namespace.
            name: The deployment's name.
            ready: Which pods of the deployment's new ReplicaSet pass their readiness probe:
                all (True), none (False), or that many of them. Pods of old ReplicaSets keep
                the readiness they had.

        Returns:
            The deployment as stored afterwards.

        Raises:
            KeyError: No such deployment.
        """
        for _ in range(_MAX_STEPS):  # until a whole round writes nothing
            before = self.store.revision
            self._sync_replicasets(self._deployment(namespace, name), ready)
            self._sync_deployment(self._deployment(namespace, name))
            if self.store.revision == before:
                break
        return self._deployment(namespace, name)

    def stall(self, namespace: str, name: str) -> Obj:
        """Mark the rollout as past its progress deadline, as the controller does when the new
        ReplicaSet has made no progress for ``progressDeadlineSeconds``."""
        deployment = self._deployment(namespace, name)
        new_rs, _ = self._split(deployment, self._owned(deployment))
        rs_name = new_rs["metadata"]["name"] if new_rs else deployment["metadata"]["name"]
        status = copy.deepcopy(deployment.get("status") or {})
        status["observedGeneration"] = deployment["metadata"]["generation"]
        _set_condition(
            status,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            f'ReplicaSet "{rs_name}" has timed out progressing.',
            self.store.now(),
        )
        return self.store.update(
            "deployments", {**deployment, "status": status}, subresource="status"
        )

    # The deployment controller -------------------------------------------------------------

    def _deployment(self, namespace: str, name: str) -> Obj:
        deployment = self.store.get("deployments", namespace, name)
        if deployment is None:
            raise KeyError(f"deployment {namespace}/{name} not found")
        return deployment

    def _owned(self, deployment: Obj) -> list[Obj]:
        """ReplicaSets the deployment's selector matches and that it controls."""
        uid = deployment["metadata"]["uid"]
        selector = deployment["spec"].get("selector")
        return [
            rs
            for rs in self.store.list("replicasets", deployment["metadata"]["namespace"])
            if matches_selector(selector, rs["metadata"].get("labels"))
            and any(
                ref.get("controller") and ref.get("uid") == uid
                for ref in rs["metadata"].get("ownerReferences") or []
            )
        ]

    @staticmethod
    def _split(deployment: Obj, replicasets: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """``FindNewReplicaSet`` (the oldest with the deployment's template) and the rest."""
        ordered = _by_creation(replicasets)
        template = deployment["spec"]["template"]
        new_rs = next(
            (rs for rs in ordered if equal_ignore_hash(rs["spec"]["template"], template)), None
        )
        return new_rs, [rs for rs in ordered if rs is not new_rs]

    def _sync_deployment(self, deployment: Obj) -> None:
        """One sync of the deployment controller: revision, one scaling step, status."""
        annotations = dict(deployment["metadata"].get("annotations") or {})
        status = copy.deepcopy(deployment.get("status") or {})
        new_rs, old_rss = self._split(deployment, self._owned(deployment))
        paused = bool(deployment["spec"].get("paused"))
        new_rs = self._new_replicaset(deployment, new_rs, old_rss, annotations, status, paused)
        if not paused:
            if _rolling(deployment):
                scaled = self._roll(deployment, new_rs, old_rss)
            else:
                scaled = self._recreate(deployment, new_rs, old_rss)
            if not scaled and _complete(deployment, deployment.get("status") or {}):
                self._cleanup(deployment, old_rss)
        new_rs, old_rss = self._split(deployment, self._owned(deployment))
        self._write_status(deployment, new_rs, old_rss, annotations, status)

    def _new_replicaset(
        self,
        deployment: Obj,
        new_rs: Obj | None,
        old_rss: list[Obj],
        annotations: dict[str, str],
        status: Obj,
        paused: bool,
    ) -> Obj | None:
        """``getNewReplicaSet``: sync the revision of the new RS, or create it."""
        revisions = [r for r in (revision_of(rs) for rs in old_rss) if r is not None]
        new_revision = max(revisions, default=0) + 1
        now = self.store.now()
        if new_rs is not None:
            rs = copy.deepcopy(new_rs)
            changed = self._copy_annotations(deployment, rs)
            rs_annotations = rs["metadata"].setdefault("annotations", {})
            old_revision = rs_annotations.get(REVISION)
            if int(old_revision or 0) < new_revision:
                rs_annotations[REVISION] = str(new_revision)
                changed = True
                if old_revision is not None:  # rolling back to this RS: keep its old numbers
                    history = rs_annotations.get(REVISION_HISTORY)
                    rs_annotations[REVISION_HISTORY] = (
                        f"{history},{old_revision}" if history else old_revision
                    )
            if changed:
                rs = self.store.update("replicasets", rs)
            annotations[REVISION] = rs["metadata"]["annotations"][REVISION]
            if _condition(status, "Progressing") is None:
                _set_condition(
                    status,
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    f'Found new replica set "{rs["metadata"]["name"]}"',
                    now,
                )
            return rs
        if paused:
            return None
        return self._create_replicaset(deployment, old_rss, new_revision, annotations, status)

    def _create_replicaset(
        self,
        deployment: Obj,
        old_rss: list[Obj],
        revision: int,
        annotations: dict[str, str],
        status: Obj,
    ) -> Obj:
        meta, spec = deployment["metadata"], deployment["spec"]
        template = copy.deepcopy(spec["template"])
        template_hash = compute_hash(template, status.get("collisionCount", 0))
        template["metadata"].setdefault("labels", {})[POD_TEMPLATE_HASH] = template_hash
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = template_hash
        replicas = spec.get("replicas", 1)
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{template_hash}",
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": spec.get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        self._copy_annotations(deployment, rs)
        rs["metadata"]["annotations"].update(
            {
                REVISION: str(revision),
                DESIRED_REPLICAS: str(replicas),
                MAX_REPLICAS: str(replicas + max_surge(deployment)),
            }
        )
        rs["spec"]["replicas"] = self._new_replicas(deployment, rs, old_rss)
        created = self.store.create("replicasets", meta["namespace"], rs)
        annotations[REVISION] = str(revision)
        _set_condition(
            status,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            f'Created new replica set "{created["metadata"]["name"]}"',
            self.store.now(),
        )
        return created

    @staticmethod
    def _copy_annotations(deployment: Obj, rs: Obj) -> bool:
        """``copyDeploymentAnnotationsToReplicaSet``; True when the RS changed."""
        target = rs["metadata"].setdefault("annotations", {})
        changed = False
        for key, value in (deployment["metadata"].get("annotations") or {}).items():
            if key in SKIP_ANNOTATIONS or target.get(key) == value:
                continue
            target[key] = value
            changed = True
        return changed

    @staticmethod
    def _new_replicas(deployment: Obj, new_rs: Obj, old_rss: list[Obj]) -> int:
        """``NewRSNewReplicas``: how far the new RS may scale up now."""
        replicas = int(deployment["spec"].get("replicas", 1))
        if not _rolling(deployment):
            return replicas
        current = _replicas(new_rs) + sum(_replicas(rs) for rs in old_rss)
        ceiling = replicas + max_surge(deployment)
        if current >= ceiling:
            return _replicas(new_rs)
        return _replicas(new_rs) + min(ceiling - current, replicas - _replicas(new_rs))

    def _scale(self, deployment: Obj, rs: Obj, replicas: int) -> bool:
        """``scaleReplicaSet``: set replicas and the desired/max replica annotations."""
        desired = deployment["spec"].get("replicas", 1)
        wanted = {
            DESIRED_REPLICAS: str(desired),
            MAX_REPLICAS: str(desired + max_surge(deployment)),
        }
        annotations = rs["metadata"].get("annotations") or {}
        if _replicas(rs) == replicas and all(annotations.get(k) == v for k, v in wanted.items()):
            return False
        updated = copy.deepcopy(rs)
        updated["spec"]["replicas"] = replicas
        updated["metadata"].setdefault("annotations", {}).update(wanted)
        self.store.update("replicasets", updated)
        return _replicas(rs) != replicas

    def _roll(self, deployment: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
        """``rolloutRolling``: scale the new RS up, then old ones down, within the fenceposts."""
        assert new_rs is not None
        desired = deployment["spec"].get("replicas", 1)
        if _replicas(new_rs) > desired:
            return self._scale(deployment, new_rs, desired)
        if _replicas(new_rs) < desired and self._scale(
            deployment, new_rs, self._new_replicas(deployment, new_rs, old_rss)
        ):
            return True
        if sum(_replicas(rs) for rs in old_rss) == 0:
            return False
        min_available = desired - max_unavailable(deployment)
        everything = sum(_replicas(rs) for rs in old_rss) + _replicas(new_rs)
        new_unavailable = _replicas(new_rs) - _status(new_rs, "availableReplicas")
        budget = everything - min_available - new_unavailable
        if budget <= 0:
            return False
        scaled, olds = 0, []
        for rs in _by_creation(old_rss):  # cleanupUnhealthyReplicas
            unhealthy = _replicas(rs) - _status(rs, "availableReplicas")
            if scaled < budget and _replicas(rs) and unhealthy > 0:
                count = min(budget - scaled, unhealthy)
                self._scale(deployment, rs, _replicas(rs) - count)
                scaled += count
                rs = {**rs, "spec": {**rs["spec"], "replicas": _replicas(rs) - count}}
            olds.append(rs)
        # scaleDownOldReplicaSetsForRollingUpdate
        available = sum(_status(rs, "availableReplicas") for rs in [*olds, new_rs])
        if available > min_available:
            remaining = available - min_available
            for rs in olds:
                if remaining <= 0:
                    break
                count = min(_replicas(rs), remaining)
                if count:
                    self._scale(deployment, rs, _replicas(rs) - count)
                    remaining -= count
                    scaled += count
        return scaled > 0

    def _recreate(self, deployment: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
        """``rolloutRecreate``: all old pods go before the new RS scales up."""
        assert new_rs is not None
        scaled = False
        for rs in old_rss:
            scaled = self._scale(deployment, rs, 0) or scaled
        if scaled or any(_status(rs, "replicas") for rs in old_rss):
            return scaled
        return self._scale(deployment, new_rs, deployment["spec"].get("replicas", 1))

    def _cleanup(self, deployment: Obj, old_rss: list[Obj]) -> None:
        """``cleanupDeployment``: delete the oldest empty RSes beyond revisionHistoryLimit."""
        limit = deployment["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        empty = [rs for rs in old_rss if _replicas(rs) == 0 and _status(rs, "replicas") == 0]
        empty.sort(key=lambda rs: (revision_of(rs) or 0, rs["metadata"]["creationTimestamp"]))
        for rs in empty[: max(0, len(empty) - limit)]:
            self.store.delete("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])

    def _write_status(
        self,
        deployment: Obj,
        new_rs: Obj | None,
        old_rss: list[Obj],
        annotations: dict[str, str],
        status: Obj,
    ) -> None:
        """``calculateStatus`` and ``syncRolloutStatus``, written through the status subresource
        (which is how the revision annotation changes without bumping the generation)."""
        spec, now = deployment["spec"], self.store.now()
        every = [*old_rss, *([new_rs] if new_rs else [])]
        desired = spec.get("replicas", 1)
        available = sum(_status(rs, "availableReplicas") for rs in every)
        counts = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": sum(_status(rs, "replicas") for rs in every),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in every),
            "availableReplicas": available,
            "unavailableReplicas": max(0, sum(_replicas(rs) for rs in every) - available),
        }
        old = deployment.get("status") or {}
        new = {k: v for k, v in status.items() if k not in counts}
        new.update({k: v for k, v in counts.items() if v})  # Go's omitempty drops zeros
        if available >= desired - max_unavailable(deployment):
            _set_condition(
                new, "Available", "True", "MinimumReplicasAvailable",
                "Deployment has minimum availability.", now,
            )  # fmt: skip
        else:
            _set_condition(
                new, "Available", "False", "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.", now,
            )  # fmt: skip
        if spec.get("paused"):
            _set_condition(
                new, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now
            )
        else:
            self._progress(deployment, new_rs, old, new, now)
        updated = copy.deepcopy(deployment)
        updated["status"] = new
        if annotations:
            updated["metadata"]["annotations"] = annotations
        self.store.update("deployments", updated, subresource="status")

    @staticmethod
    def _progress(deployment: Obj, new_rs: Obj | None, old: Obj, new: Obj, now: str) -> None:
        """The Progressing condition (``syncRolloutStatus``); deadlines are set by ``stall``."""
        current = _condition(new, "Progressing")
        complete_already = (
            new.get("replicas", 0) == new.get("updatedReplicas", 0)
            and current is not None
            and current["reason"] == "NewReplicaSetAvailable"
        )
        if complete_already or new_rs is None:
            return
        rs_name = new_rs["metadata"]["name"]
        complete = _complete(deployment, new)
        old_olds = old.get("replicas", 0) - old.get("updatedReplicas", 0)
        new_olds = new.get("replicas", 0) - new.get("updatedReplicas", 0)
        progressing = (
            new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0)
            or new_olds < old_olds
            or new.get("readyReplicas", 0) > old.get("readyReplicas", 0)
            or new.get("availableReplicas", 0) > old.get("availableReplicas", 0)
        )
        if complete:
            _set_condition(
                new, "Progressing", "True", "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.', now,
            )  # fmt: skip
        elif progressing:
            # Progress always rewrites the condition (message and lastUpdateTime), keeping
            # lastTransitionTime while it stays True.
            transition = (
                current["lastTransitionTime"] if current and current["status"] == "True" else now
            )
            conditions = [c for c in new.get("conditions") or [] if c["type"] != "Progressing"]
            new["conditions"] = [
                *conditions,
                {
                    "type": "Progressing",
                    "status": "True",
                    "lastUpdateTime": now,
                    "lastTransitionTime": transition,
                    "reason": "ReplicaSetUpdated",
                    "message": f'ReplicaSet "{rs_name}" is progressing.',
                },
            ]

    # The ReplicaSet controller and the kubelet ----------------------------------------------

    def _sync_replicasets(self, deployment: Obj, ready: bool | int) -> None:
        """Create or delete pods to match each RS, set readiness, update RS status."""
        new_rs, _ = self._split(deployment, self._owned(deployment))
        for rs in self._owned(deployment):
            is_new = new_rs is not None and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]
            self._sync_pods(rs, ready if is_new else None)

    def _pods_of(self, rs: Obj) -> list[Obj]:
        uid = rs["metadata"]["uid"]
        return _by_creation(
            pod
            for pod in self.store.list("pods", rs["metadata"]["namespace"])
            if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])
        )

    def _sync_pods(self, rs: Obj, ready: bool | int | None) -> None:
        """The ReplicaSet controller for one RS, and the kubelet for its pods.

        ``ready`` (new RS only): True, False or how many of its pods are ready; None leaves
        readiness as it is.
        """
        pods = self._pods_of(rs)
        want = _replicas(rs)
        while len(pods) < want:
            pods.append(self._create_pod(rs))
        if len(pods) > want:  # unready pods go first, then the newest
            newest_first = sorted(
                pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True
            )
            doomed = sorted(newest_first, key=_is_ready)
            for pod in doomed[: len(pods) - want]:
                self.store.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
                pods.remove(pod)
        if ready is not None:
            count = len(pods) if ready is True else 0 if ready is False else int(ready)
            for index, pod in enumerate(pods):
                if _is_ready(pod) != (index < count):
                    self._set_pod_ready(pod, index < count)
        ready_count = sum(1 for pod in self._pods_of(rs) if _is_ready(pod))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready_count,
            "availableReplicas": ready_count,
            "observedGeneration": rs["metadata"]["generation"],
        }
        status = {k: v for k, v in status.items() if v or k == "replicas"}
        if status != rs.get("status"):
            self.store.update("replicasets", {**rs, "status": status}, subresource="status")

    def _create_pod(self, rs: Obj) -> Obj:
        template = copy.deepcopy(rs["spec"]["template"])
        meta = rs["metadata"]
        nodes = [n["metadata"]["name"] for n in self.store.list("nodes")]
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                **template.get("metadata", {}),
                "name": f"{meta['name']}-{self.store.new_name_suffix()}",
                "namespace": meta["namespace"],
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**template["spec"], **({"nodeName": nodes[0]} if nodes else {})},
        }
        created = self.store.create("pods", meta["namespace"], pod)
        return self._set_pod_ready(created, False)

    def _set_pod_ready(self, pod: Obj, ready: bool) -> Obj:
        """What the kubelet reports: Running, with the Ready condition set as asked."""
        now = self.store.now()
        value = "True" if ready else "False"
        containers = pod["spec"].get("containers") or []
        names = ", ".join(c["name"] for c in containers)
        reason = (
            {}
            if ready
            else {
                "reason": "ContainersNotReady",
                "message": f"containers with unready status: [{names}]",
            }
        )
        started = (pod.get("status") or {}).get("startTime", now)
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "Ready", "status": value, "lastTransitionTime": now, **reason},
            {"type": "ContainersReady", "status": value, "lastTransitionTime": now, **reason},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
        ]
        status = {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": "10.0.0.1",
            "podIP": "10.244.0.10",
            "startTime": started,
            "containerStatuses": [
                {
                    "name": c["name"],
                    "state": {"running": {"startedAt": started}},
                    "ready": ready,
                    "restartCount": 0,
                    "image": c.get("image", ""),
                    "imageID": f"{c.get('image', '')}@sha256:{'0' * 64}",
                    "containerID": f"containerd://{pod['metadata']['uid'].replace('-', '')}",
                    "started": True,
                }
                for c in containers
            ],
            "qosClass": "BestEffort",
        }
        return self.store.update("pods", {**pod, "status": status}, subresource="status")


def node_object(name: str, *, ready: bool, now: str | None = None) -> Obj:
    """A Node as the kubelet registers it, with its Ready condition True or False."""
    now = now or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pressure = [
        {
            "type": kind,
            "status": "False",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": f"KubeletHasNo{label}",
            "message": f"kubelet has no {label.lower()}",
        }
        for kind, label in (
            ("MemoryPressure", "MemoryPressure"),
            ("DiskPressure", "DiskPressure"),
            ("PIDPressure", "PIDPressure"),
        )
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [*pressure, node_ready_condition(ready, now)],
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "machineID": "0" * 32,
                "systemUUID": "00000000-0000-0000-0000-000000000000",
                "bootID": "00000000-0000-0000-0000-000000000001",
                "kernelVersion": "6.1.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.0",
                "kubeletVersion": "v1.32.4",
                "kubeProxyVersion": "v1.32.4",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def node_ready_condition(ready: bool, now: str) -> Obj:
    """The kubelet's Ready condition for a node."""
    if ready:
        reason, message = "KubeletReady", "kubelet is posting ready status"
    else:
        reason, message = "KubeletNotReady", "container runtime network not ready"
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
