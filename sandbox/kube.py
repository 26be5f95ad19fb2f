"""A Kubernetes API server on loopback, for the ``kubernetes`` client and the real ``kubectl``.

``FakeKube`` serves apps/v1 Deployments and ReplicaSets and core/v1 Pods and Nodes over plain
HTTP on ``127.0.0.1`` port 0 (so tests run in parallel), the way kube-apiserver does:

- discovery (``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/apps``, ``/apis/apps/v1``)
  as the legacy documents; kubectl asks for aggregated discovery first and falls back to these
  when the answer is plain ``application/json``;
- GET and LIST (``labelSelector``, ``fieldSelector``), as ``Table`` when the client asks
  (``kubectl get``), and ``watch=true`` streams (``kubectl rollout status``), including
  ``sendInitialEvents``;
- POST, PUT (with optimistic concurrency on ``resourceVersion``), DELETE (cascading, as the
  garbage collector would) and PATCH in the three patch formats: strategic merge
  (``kubectl set image``), JSON merge and JSON patch (``kubectl rollout undo``); ``/status``
  subresources; ``dryRun``;
- the API server's defaults, ``metadata.generation`` bumped on spec (and, for Deployments,
  annotation) changes, and Status errors with kube-apiserver's reasons and messages.

Controllers never run by themselves: the caller moves the cluster on with
``reconcile(namespace, name, ready=...)``, ``stall(...)`` and ``add_node(...)`` (see
:mod:`sandbox.kube_controller`): a test steps it by hand, the sandbox on a timer. Every
request is recorded in ``requests``.
"""

from __future__ import annotations

import builtins
import copy
import json
import random
import re
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonpatch
import yaml

from sandbox.kube_controller import (
    DeploymentController,
    Obj,
    apply_defaults,
    matches_selector,
    node_object,
    node_ready_condition,
    parse_field_selector,
    parse_label_selector,
    semantic,
)
from sandbox.serving import ServedInBackground

SERVER_VERSION = "v1.32.4"  # gcloud's kubectl dispatcher picks the kubectl of this minor
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_WATCH_LIMIT = 600.0  # seconds a watch stays open at most (kube-apiserver: 30-60 min)
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


@dataclass(frozen=True)
class Resource:
    """One API resource: where it lives, what it is called, how writes treat it."""

    plural: str
    singular: str
    kind: str
    group: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    tracks_generation: bool = False  # metadata.generation counts spec changes
    annotations_bump_generation: bool = False  # Deployments: annotations are copied to RSes
    immutable_selector: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    @property
    def qualified(self) -> str:
        """``deployments.apps``: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource(
            "deployments", "deployment", "Deployment", "apps", True, ("deploy",),
            tracks_generation=True, annotations_bump_generation=True, immutable_selector=True,
        ),
        Resource(
            "replicasets", "replicaset", "ReplicaSet", "apps", True, ("rs",),
            tracks_generation=True, immutable_selector=True,
        ),
        Resource("pods", "pod", "Pod", "", True, ("po",)),
        Resource("nodes", "node", "Node", "", False, ("no",)),
    )
}  # fmt: skip
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Request:
    """One request the server received.

    Attributes:
        method: HTTP method.
        path: URL path, without the query.
        query: Query parameters (the last value of each).
        content_type: The request's Content-Type ("" when none).
        accept: The request's Accept header.
        user_agent: Who sent it (``kubectl/v1.32.4 ...``, ``OpenAPI-Generator/...``).
        body: The decoded JSON body, or None.
    """

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    accept: str
    user_agent: str
    body: Any = None


class ApiError(Exception):
    """A request the API server refuses; becomes a ``Status`` response."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        """The ``metav1.Status`` document kube-apiserver would send."""
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{resource.qualified} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def _invalid(resource: Resource, name: str, causes: list[str]) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{resource.qualified_kind} "{name}" is invalid: {", ".join(causes)}',
        {"name": name, "group": resource.group, "kind": resource.kind},
    )


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


# --- storage -------------------------------------------------------------------------------


@dataclass
class _Event:
    revision: int
    resource: str
    type: str
    object: Obj


@dataclass
class _Store:
    """Objects by (resource, namespace, name), a global resourceVersion and the event log.

    ``lock`` guards everything; watchers wait on it for new events.
    """

    seed: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)
    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)
    revision: int = 1
    events: list[_Event] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # uids and pod names repeat across servers

    # The controllers' interface (tests.support.kube_controller.Store) ------------------------

    def now(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def new_name_suffix(self) -> str:
        with self.lock:
            return "".join(self._random.choice(_SUFFIX_ALPHABET) for _ in range(5))

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            found = self.objects.get((resource, namespace or "", name))
            return copy.deepcopy(found) if found is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        with self.lock:
            return [
                copy.deepcopy(obj)
                for (kind, ns, _), obj in sorted(self.objects.items())
                if kind == resource and (namespace is None or ns == namespace)
            ]

    def create(
        self, resource: str, namespace: str | None, obj: Obj, *, dry_run: bool = False
    ) -> Obj:
        info = RESOURCES[resource]
        obj = _prune_nulls(copy.deepcopy(obj))
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request",
                )
            meta["namespace"] = namespace
        with self.lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + self.new_name_suffix()
            name = meta.get("name")
            if not name:
                raise _invalid(
                    info, "", ["metadata.name: Required value: name or generateName is required"]
                )
            key = (resource, namespace or "", name)
            if key in self.objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{info.qualified} "{name}" already exists',
                    {"name": name, "group": info.group, "kind": info.plural},
                )
            obj["apiVersion"], obj["kind"] = info.api_version, info.kind
            apply_defaults(resource, obj)
            _validate(info, obj, None)
            meta["uid"] = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
            meta["creationTimestamp"] = self.now()
            if info.tracks_generation:
                meta["generation"] = 1
            if resource in ("deployments", "replicasets"):
                obj["status"] = {}
            elif resource == "pods":
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            if dry_run:
                return obj
            return self._store(resource, key, obj, "ADDED")

    def update(
        self,
        resource: str,
        obj: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        info = RESOURCES[resource]
        new = _prune_nulls(copy.deepcopy(obj))
        meta = new.setdefault("metadata", {})
        name = meta.get("name", "")
        with self.lock:
            key = (resource, meta.get("namespace", "") if info.namespaced else "", name)
            old = self.objects.get(key)
            if old is None:
                raise _not_found(info, name)
            sent = meta.get("resourceVersion")
            if sent and sent != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {info.qualified} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": info.group, "kind": info.plural},
                )
            for server_owned in ("uid", "creationTimestamp", "generation", "namespace"):
                if server_owned in old["metadata"]:
                    meta[server_owned] = old["metadata"][server_owned]
            new["apiVersion"], new["kind"] = info.api_version, info.kind
            if subresource == "status":  # status writes may not touch spec or labels
                new["spec"] = copy.deepcopy(old.get("spec", {}))
                meta["labels"] = copy.deepcopy(old["metadata"].get("labels"))
            else:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                apply_defaults(resource, new)
                _validate(info, new, old)
                if info.tracks_generation and (
                    semantic(new.get("spec")) != semantic(old.get("spec"))
                    or (
                        info.annotations_bump_generation
                        and semantic(meta.get("annotations"))
                        != semantic(old["metadata"].get("annotations"))
                    )
                ):
                    meta["generation"] = old["metadata"]["generation"] + 1
            new = _prune_nulls(new)
            meta = new["metadata"]
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if new == old or dry_run:  # kube-apiserver skips no-op writes
                return copy.deepcopy(new if dry_run else old)
            return self._store(resource, key, new, "MODIFIED")

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        with self.lock:
            key = (resource, namespace or "", name)
            obj = self.objects.pop(key, None)
            if obj is None:
                raise _not_found(RESOURCES[resource], name)
            self.revision += 1
            obj["metadata"]["resourceVersion"] = str(self.revision)
            self.events.append(_Event(self.revision, resource, "DELETED", copy.deepcopy(obj)))
            uid = obj["metadata"]["uid"]
            dependents = [  # the garbage collector, in the background, at once
                k
                for k, o in self.objects.items()
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
            ]
            for dependent in dependents:
                if dependent in self.objects:
                    self.delete(*dependent)
            self.lock.notify_all()

    def _store(self, resource: str, key: tuple[str, str, str], obj: Obj, kind: str) -> Obj:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self.objects[key] = obj
        self.events.append(_Event(self.revision, resource, kind, copy.deepcopy(obj)))
        self.lock.notify_all()
        return copy.deepcopy(obj)

    def events_after(self, revision: int) -> builtins.list[_Event]:
        with self.lock:
            start = bisect_right([e.revision for e in self.events], revision)
            return self.events[start:]


def _validate(info: Resource, obj: Obj, old: Obj | None) -> None:
    """The validation kubectl and the bot can trip over; not all of kube-apiserver's."""
    name, spec, causes = obj["metadata"].get("name", ""), obj.get("spec") or {}, []
    if info.plural in ("deployments", "replicasets"):
        selector = spec.get("selector")
        labels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
        if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.append("spec.selector: Required value")
        elif not matches_selector(selector, labels):
            causes.append(
                f"spec.template.metadata.labels: Invalid value: {json.dumps(labels)}: "
                "`selector` does not match template `labels`"
            )
        if int(spec.get("replicas", 0)) < 0:
            causes.append("spec.replicas: Invalid value: must be greater than or equal to 0")
        if old is not None and semantic(selector) != semantic(old["spec"].get("selector")):
            causes.append(
                f"spec.selector: Invalid value: {json.dumps(selector)}: field is immutable"
            )
        pod_spec, prefix = (spec.get("template") or {}).get("spec") or {}, "spec.template.spec"
    elif info.plural == "pods":
        pod_spec, prefix = spec, "spec"
    else:
        pod_spec = None
    if pod_spec is not None:
        containers = pod_spec.get("containers") or []
        if not containers:
            causes.append(f"{prefix}.containers: Required value")
        for n, container in enumerate(containers):
            for required in ("name", "image"):
                if not container.get(required):
                    causes.append(f"{prefix}.containers[{n}].{required}: Required value")
    if causes:
        raise _invalid(info, name, causes)


# --- patches -------------------------------------------------------------------------------

# patchMergeKey of the lists the strategic merge patch merges (from the Go types' tags).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "topologySpreadConstraints": "topologyKey",
    "taints": "key",
    "addresses": "type",
}
_MERGED_PRIMITIVE_LISTS = frozenset({"finalizers"})


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch: maps merge, keyed lists merge by their merge key,
    other lists are replaced; ``null`` deletes; ``$patch``, ``$retainKeys``,
    ``$setElementOrder/...`` and ``$deleteFromPrimitiveList/...`` directives apply."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and key in _MERGE_KEYS:
            result[key] = _merge_keyed_list(result.get(key) or [], value, _MERGE_KEYS[key])
        elif isinstance(value, list) and key in _MERGED_PRIMITIVE_LISTS:
            result[key] = [
                *(result.get(key) or []),
                *(v for v in value if v not in result.get(key, [])),
            ]
        else:
            result[key] = copy.deepcopy(value)
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            target = key.split("/", 1)[1]
            result[target] = [v for v in result.get(target) or [] if v not in value]
        elif key.startswith("$setElementOrder/"):
            target = key.split("/", 1)[1]
            if isinstance(result.get(target), list):
                result[target] = _reorder(result[target], value, _MERGE_KEYS.get(target))
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _merge_keyed_list(original: list[Any], patch: list[Any], key: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict):
            result.append(copy.deepcopy(item))
            continue
        index = next(
            (
                n
                for n, have in enumerate(result)
                if isinstance(have, dict) and have.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    ranked = [i for w in wanted for i in items if ident(i) == w]
    return ranked + [i for i in items if ident(i) not in wanted]


def merge_patch(original: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch (a dozen lines: not worth a dependency)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class _PatchError(ValueError):
    pass


def json_patch(original: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test) to a copy."""
    if not isinstance(operations, list):
        raise _PatchError("a JSON patch is a list of operations")
    try:
        return jsonpatch.apply_patch(original, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
        raise _PatchError(str(error)) from None


# --- tables (kubectl get) ------------------------------------------------------------------


def _age(timestamp: str | None) -> str:
    """``duration.HumanDuration`` of the time since ``timestamp``, as kubectl shows ages."""
    if not timestamp:
        return "<unknown>"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _column(name: str, kind: str = "string", *, priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": kind, "format": fmt, "description": name, "priority": priority}


def _selector_text(selector: Obj | None) -> str:
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        parts.append(f"{e['key']} {e['operator'].lower()} ({','.join(e.get('values') or [])})")
    return ",".join(parts) or "<none>"


def _containers(obj: Obj) -> tuple[str, str]:
    containers = obj["spec"]["template"]["spec"].get("containers") or []
    return ",".join(c["name"] for c in containers), ",".join(c.get("image", "") for c in containers)


def _table_columns(resource: str) -> list[Obj]:
    name = _column("Name", fmt="name")
    if resource == "deployments":
        return [
            name, _column("Ready"), _column("Up-to-date", "integer"),
            _column("Available", "integer"), _column("Age"),
            _column("Containers", priority=1), _column("Images", priority=1),
            _column("Selector", priority=1),
        ]  # fmt: skip
    if resource == "replicasets":
        return [
            name, _column("Desired", "integer"), _column("Current", "integer"),
            _column("Ready", "integer"), _column("Age"), _column("Containers", priority=1),
            _column("Images", priority=1), _column("Selector", priority=1),
        ]  # fmt: skip
    if resource == "pods":
        return [
            name, _column("Ready"), _column("Status"), _column("Restarts", "string"),
            _column("Age"), _column("IP", priority=1), _column("Node", priority=1),
        ]  # fmt: skip
    return [
        name, _column("Status"), _column("Roles"), _column("Age"), _column("Version"),
        _column("Internal-IP", priority=1),
    ]  # fmt: skip


def _table_cells(resource: str, obj: Obj) -> list[Any]:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    age = _age(meta.get("creationTimestamp"))
    if resource == "deployments":
        names, images = _containers(obj)
        return [
            meta["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), age,
            names, images, _selector_text(spec.get("selector")),
        ]  # fmt: skip
    if resource == "replicasets":
        names, images = _containers(obj)
        return [
            meta["name"], spec.get("replicas", 1), status.get("replicas", 0),
            status.get("readyReplicas", 0), age, names, images,
            _selector_text(spec.get("selector")),
        ]  # fmt: skip
    if resource == "pods":
        statuses = status.get("containerStatuses") or []
        ready = sum(1 for s in statuses if s.get("ready"))
        restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
        return [
            meta["name"], f"{ready}/{len(spec.get('containers') or [])}",
            status.get("reason") or status.get("phase", "Pending"), str(restarts), age,
            status.get("podIP", "<none>"), spec.get("nodeName", "<none>"),
        ]  # fmt: skip
    condition: Obj = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
    state = "Ready" if condition.get("status") == "True" else "NotReady"
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    internal = next(
        (a["address"] for a in status.get("addresses") or [] if a["type"] == "InternalIP"),
        "<none>",
    )
    version = (status.get("nodeInfo") or {}).get("kubeletVersion", "")
    return [meta["name"], state, "<none>", age, version, internal]


def _table(resource: str, objs: list[Obj], revision: int) -> Obj:
    """A ``meta.k8s.io/v1`` Table, with the object metadata in each row (includeObject=Metadata)."""
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(revision)},
        "columnDefinitions": _table_columns(resource),
        "rows": [
            {
                "cells": _table_cells(resource, obj),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
            for obj in objs
        ],
    }


# --- discovery -----------------------------------------------------------------------------


def _resource_list(group: str) -> Obj:
    resources: list[Obj] = []
    for r in RESOURCES.values():
        if r.group != group:
            continue
        resources.append(
            {
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": _VERBS,
                "shortNames": list(r.short_names),
                **({"categories": ["all"]} if r.namespaced else {}),
            }
        )
        resources.append(
            {
                "name": f"{r.plural}/status",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/v1" if group else "v1",
        "resources": resources,
    }


_APPS_GROUP = {
    "kind": "APIGroup",
    "apiVersion": "v1",
    "name": "apps",
    "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
    "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
}


def _version_info() -> Obj:
    major, minor, _ = SERVER_VERSION.lstrip("v").split(".")
    return {
        "major": major,
        "minor": minor,
        "gitVersion": SERVER_VERSION,
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2025-04-22T16:00:00Z",
        "goVersion": "go1.23.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


# --- HTTP ----------------------------------------------------------------------------------

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/v1)"
    r"(?:/namespaces/(?P<namespace>[^/]+))?"
    r"/(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<subresource>[^/]+))?)?$"
)


@dataclass
class _Reply:
    code: int
    body: Any
    stream: Iterator[Obj] | None = None


class FakeKube(ServedInBackground):
    """A Kubernetes API server on 127.0.0.1 port 0; see the module docstring.

    Args:
        seed: Seeds uids and generated names, so two servers fed the same requests hold the
            same objects (names, uids, revisions).
    """

    def __init__(self, *, seed: int = 0) -> None:
        self._store = _Store(seed=seed)
        self._controller = DeploymentController(self._store)
        self._requests: list[Request] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        self._start_serving(server, "fake-kube")

    # Lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving; open watches end at once."""
        with self._store.lock:
            self._store.closed = True
            self._store.lock.notify_all()
        super().close()

    def kubeconfig(
        self, path: str | Path, *, context: str = "fake", namespace: str | None = None
    ) -> Path:
        """Write a kubeconfig for this server (plain HTTP, no credentials) and return its path."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": context,
                        "user": context,
                        **({"namespace": namespace} if namespace else {}),
                    },
                }
            ],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    @property
    def requests(self) -> list[Request]:
        """Every request received so far, oldest first."""
        with self._store.lock:
            return list(self._requests)

    # The cluster, for tests ------------------------------------------------------------------

    def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj:
        """Create an object as a POST would (defaults, validation, uid, resourceVersion)."""
        return self._store.create(resource, namespace or obj["metadata"].get("namespace"), obj)

    def create_deployment(
        self,
        namespace: str,
        name: str,
        *,
        image: str = "registry.example/api:v1",
        replicas: int = 1,
        container: str | None = None,
        annotations: dict[str, str] | None = None,
        strategy: Obj | None = None,
    ) -> Obj:
        """Create a Deployment of one container, selecting ``app=<name>``."""
        meta: Obj = {"name": name, "labels": {"app": name}}
        if annotations:
            meta["annotations"] = dict(annotations)
        spec: Obj = {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": container or name, "image": image}]},
            },
        }
        if strategy:
            spec["strategy"] = strategy
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
        return self._store.create("deployments", namespace, body)

    def get(self, resource: str, namespace: str | None, name: str) -> Obj:
        """The stored object (a copy). Raises KeyError when there is none."""
        found = self._store.get(resource, namespace, name)
        if found is None:
            raise KeyError(f"{resource} {namespace}/{name}")
        return found

    def list(
        self, resource: str, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[Obj]:
        """Stored objects of one resource (copies), optionally filtered by a label selector."""
        matches = parse_label_selector(label_selector)
        return [
            obj
            for obj in self._store.list(resource, namespace)
            if matches(obj["metadata"].get("labels") or {})
        ]

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = "application/strategic-merge-patch+json",
    ) -> Obj:
        """PATCH an object as a client would."""
        return self._patch(RESOURCES[resource], namespace, name, None, patch, content_type, False)

    def update(self, resource: str, obj: Obj, *, subresource: str | None = None) -> Obj:
        """PUT an object (or its status) as a client would."""
        return self._store.update(resource, obj, subresource=subresource)

    def reconcile(self, namespace: str, name: str, *, ready: bool | int = True) -> Obj:
        """Run the deployment controller, ReplicaSet controller and kubelet until settled.

        Creates the ReplicaSet for the current template (or revives the old one with an equal
        template, giving it the next revision: that is how ``rollout undo`` shows up), scales
        old ReplicaSets down as far as ``maxUnavailable`` allows, creates pods and updates
        status (observedGeneration, replica counts, Progressing and Available conditions).

        Args:
            namespace: The deployment's namespace.
            name: The deployment's name.
            ready: Readiness of the new ReplicaSet's pods: all (True), none (False), or a count.

        Returns:
            The deployment afterwards.
        """
        return self._controller.reconcile(namespace, name, ready=ready)

    def stall(self, namespace: str, name: str) -> Obj:
        """Set Progressing=False, reason ProgressDeadlineExceeded, as a timed-out rollout has."""
        return self._controller.stall(namespace, name)

    def add_node(self, name: str, *, ready: bool = True) -> Obj:
        """Register a node whose Ready condition is True or False."""
        return self._store.create(
            "nodes", None, node_object(name, ready=ready, now=self._store.now())
        )

    def set_node_ready(self, name: str, ready: bool) -> Obj:
        """Flip a node's Ready condition."""
        node = self.get("nodes", None, name)
        conditions = [c for c in node["status"]["conditions"] if c["type"] != "Ready"]
        node["status"]["conditions"] = [*conditions, node_ready_condition(ready, self._store.now())]
        return self._store.update("nodes", node, subresource="status")

    # Serving -------------------------------------------------------------------------------

    def _record(self, request: Request) -> None:
        with self._store.lock:
            self._requests.append(request)

    def _serve(self, method: str, url: str, headers: dict[str, str], raw: bytes) -> _Reply:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        content_type = headers.get("content-type", "").split(";")[0].strip()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(
            Request(
                method,
                parts.path,
                query,
                content_type,
                headers.get("accept", ""),
                headers.get("user-agent", ""),
                body,
            )
        )
        try:
            if raw and body is None:
                raise ApiError(400, "BadRequest", "the request body is not valid JSON")
            return self._route(method, parts.path, query, headers, content_type, body)
        except ApiError as error:
            return _Reply(error.code, error.status())

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        content_type: str,
        body: Any,
    ) -> _Reply:
        discovery: dict[str, Callable[[], Obj]] = {
            "/version": _version_info,
            "/api": lambda: {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                ],
            },
            "/apis": lambda: {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_APPS_GROUP]},
            "/api/v1": lambda: _resource_list(""),
            "/apis/apps": lambda: _APPS_GROUP,
            "/apis/apps/v1": lambda: _resource_list("apps"),
        }
        if path.rstrip("/") in discovery and method == "GET":
            return _Reply(200, discovery[path.rstrip("/")]())
        match = _PATH.match(path)
        info = RESOURCES.get(match["resource"]) if match else None
        if not match or info is None or (match["group"] or "") != info.group:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace, name, subresource = match["namespace"], match["name"], match["subresource"]
        if info.namespaced != (namespace is not None) and (name or method == "POST"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if subresource not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        dry_run = "dryRun" in query
        table = "as=Table" in headers.get("accept", "")
        if name is None:
            if method == "GET" and query.get("watch") in ("true", "1"):
                return _Reply(200, None, self._watch(info, namespace, query))
            if method == "GET":
                return _Reply(200, self._list(info, namespace, query, table=table))
            if method == "POST":
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "the request body must be an object")
                return _Reply(
                    201, self._store.create(info.plural, namespace, body, dry_run=dry_run)
                )
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if method == "GET":
            found = self._store.get(info.plural, namespace, name)
            if found is None:
                raise _not_found(info, name)
            return _Reply(
                200, _table(info.plural, [found], self._store.revision) if table else found
            )
        if method == "PUT":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the request body must be an object")
            meta = body.setdefault("metadata", {})
            if meta.get("name") != name or (
                namespace and meta.get("namespace", namespace) != namespace
            ):
                raise ApiError(
                    400, "BadRequest", "the name of the object does not match the name on the URL"
                )
            meta["namespace"] = namespace
            return _Reply(
                200, self._store.update(info.plural, body, subresource=subresource, dry_run=dry_run)
            )
        if method == "PATCH":
            return _Reply(
                200, self._patch(info, namespace, name, subresource, body, content_type, dry_run)
            )
        if method == "DELETE":
            found = self._store.get(info.plural, namespace, name)
            if found is None:
                raise _not_found(info, name)
            if not dry_run:
                self._store.delete(info.plural, namespace, name)
            if info.plural == "pods":
                return _Reply(200, found)
            return _Reply(
                200,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": info.group,
                        "kind": info.plural,
                        "uid": found["metadata"]["uid"],
                    },
                },
            )
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _patch(
        self,
        info: Resource,
        namespace: str | None,
        name: str,
        subresource: str | None,
        patch: Any,
        content_type: str,
        dry_run: bool,
    ) -> Obj:
        if content_type not in _PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(_PATCH_TYPES)}",
            )
        with self._store.lock:  # read, patch and write as one step, like a retried GuaranteedUpdate
            current = self._store.get(info.plural, namespace, name)
            if current is None:
                raise _not_found(info, name)
            try:
                if content_type == "application/json-patch+json":
                    patched = json_patch(current, patch)
                elif content_type == "application/merge-patch+json":
                    patched = merge_patch(current, patch)
                else:
                    patched = strategic_merge_patch(current, patch)
            except (_PatchError, KeyError, TypeError, IndexError) as error:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {error}",
                ) from None
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the patched object is not an object")
            meta = patched.setdefault("metadata", {})
            if meta.get("name") != name:
                raise ApiError(
                    422,
                    "Invalid",
                    f'{info.qualified_kind} "{name}" is invalid: metadata.name: field is immutable',
                )
            if info.namespaced:
                meta["namespace"] = namespace
            sent = (
                (patch.get("metadata") or {}).get("resourceVersion")
                if isinstance(patch, dict)
                else None
            )
            if not sent:
                meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self._store.update(
                info.plural, patched, subresource=subresource, dry_run=dry_run
            )

    def _selectors(self, query: dict[str, str]) -> Callable[[Obj], bool]:
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"))
        except ValueError as error:
            raise ApiError(400, "BadRequest", str(error)) from None
        return lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj)

    def _list(
        self, info: Resource, namespace: str | None, query: dict[str, str], *, table: bool
    ) -> Obj:
        matches = self._selectors(query)
        with self._store.lock:
            items = [obj for obj in self._store.list(info.plural, namespace) if matches(obj)]
            revision = self._store.revision
        if table:
            return _table(info.plural, items, revision)
        for item in items:  # list items carry no apiVersion/kind on the wire
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": {"resourceVersion": str(revision)},
            "items": items,
        }

    def _watch(self, info: Resource, namespace: str | None, query: dict[str, str]) -> Iterator[Obj]:
        matches = self._selectors(query)
        timeout = min(float(query.get("timeoutSeconds") or _WATCH_LIMIT), _WATCH_LIMIT)
        initial = query.get("sendInitialEvents") == "true"
        since = query.get("resourceVersion") or "0"
        if not since.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resource version: {since!r}")
        store = self._store

        def in_scope(obj: Obj) -> bool:
            return namespace is None or obj["metadata"].get("namespace") == namespace

        with store.lock:
            cursor = store.revision if initial or since == "0" else int(since)
            snapshot = [o for o in store.list(info.plural, namespace) if matches(o)]

        def events() -> Iterator[Obj]:
            nonlocal cursor
            if initial or since == "0":  # "from now": the current objects as ADDED first
                for obj in snapshot:
                    yield {"type": "ADDED", "object": obj}
            if initial:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": info.kind,
                        "apiVersion": info.api_version,
                        "metadata": {
                            "resourceVersion": str(cursor),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
            deadline = time.monotonic() + timeout
            while True:
                with store.lock:
                    while (
                        not store.closed
                        and store.revision <= cursor
                        and time.monotonic() < deadline
                    ):
                        store.lock.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                    if store.closed or (store.revision <= cursor and time.monotonic() >= deadline):
                        return
                    fresh = store.events_after(cursor)
                    cursor = store.revision
                for event in fresh:
                    if (
                        event.resource == info.plural
                        and in_scope(event.object)
                        and matches(event.object)
                    ):
                        yield {"type": event.type, "object": copy.deepcopy(event.object)}

        return events()


def _handler_for(kube: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # idle keep-alive connections end eventually

        def _handle(self) -> None:
            raw = self._body()
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = kube._serve(self.command, self.path, headers, raw)
            if reply.stream is not None:
                self._stream(reply.stream)
                return
            data = json.dumps(reply.body).encode()
            self.send_response(reply.code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Audit-Id", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _stream(self, events: Iterator[Obj]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self.wfile.flush()
                for event in events:
                    data = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
