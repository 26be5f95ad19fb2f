"""The fake Kubernetes API server against the real kubectl and the ``kubernetes`` client.

If these pass, the fake answers what kubectl asks the way kube-apiserver does (discovery,
tables, watches, the three patch formats) and its controller step produces the ReplicaSets,
revisions and status that ``kubectl rollout status / history / undo`` read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.support.kube import (
    KUBECTL,
    FakeKube,
    Kubectl,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from tests.support.kube_controller import compute_hash, parse_label_selector

NS = "shop"
REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


@pytest.fixture
def kubectl(kube: FakeKube, tmp_path: Path) -> Kubectl:
    if not os.access(KUBECTL, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"kubectl is not installed at {KUBECTL} (never skipped in CI)")
        pytest.skip(f"kubectl is not installed at {KUBECTL}")
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(kube.kubeconfig(tmp_path / "kubeconfig"), home)


@pytest.fixture
def apps(kube: FakeKube, tmp_path: Path) -> Iterator[k8s_client.AppsV1Api]:
    api = k8s_config.new_client_from_config(str(kube.kubeconfig(tmp_path / "client-config")))
    with api:
        yield k8s_client.AppsV1Api(api)


def _image(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def _replicasets(kube: FakeKube) -> dict[str, dict[str, Any]]:
    """The namespace's ReplicaSets by image."""
    return {_image(rs): rs for rs in kube.list("replicasets", NS)}


# --- kubectl against the fake --------------------------------------------------------------


def test_kubectl_get_reads_discovery_and_server_side_tables(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    kube.create_deployment(NS, "api", replicas=3)
    kube.reconcile(NS, "api")

    result = kubectl("get", "deployments", "-n", NS)

    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:4] == ["api", "3/3", "3", "3"]
    asked = {(r.method, r.path) for r in kube.requests}
    assert {("GET", "/api"), ("GET", "/apis"), ("GET", "/apis/apps/v1")} <= asked
    listing = next(r for r in kube.requests if r.path.endswith("/deployments"))
    assert "as=Table" in listing.accept


def test_kubectl_get_pods_shows_readiness_and_an_empty_namespace_says_so(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    kube.create_deployment(NS, "api", replicas=2)
    kube.reconcile(NS, "api", ready=1)

    pods = kubectl("get", "pods", "-n", NS, "-l", "app=api")
    empty = kubectl("get", "deployments", "-n", "elsewhere")

    assert sorted(line.split()[1] for line in pods.stdout.splitlines()[1:]) == ["0/1", "1/1"]
    assert empty.returncode == 0
    assert "No resources found in elsewhere namespace." in empty.stderr


def test_set_image_is_a_strategic_merge_patch_that_bumps_the_generation(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    kube.create_deployment(NS, "api", image="shop/api:v1")
    kube.reconcile(NS, "api")

    result = kubectl("set", "image", "deployment/api", "api=shop/api:v2", "-n", NS)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "deployment.apps/api image updated"
    patch = next(r for r in kube.requests if r.method == "PATCH")
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.body["spec"]["template"]["spec"]["containers"] == [
        {"image": "shop/api:v2", "name": "api"}
    ]
    deployment = kube.get("deployments", NS, "api")
    assert _image(deployment) == "shop/api:v2"
    assert deployment["metadata"]["generation"] == 2
    assert deployment["status"]["observedGeneration"] == 1  # the controller has not run yet
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"  # merged, defaults kept


def test_reconcile_rolls_to_a_new_replicaset_with_the_next_revision(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    kube.create_deployment(NS, "api", image="shop/api:v1", replicas=3)
    kube.reconcile(NS, "api")
    kubectl("set", "image", "deployment/api", "api=shop/api:v2", "-n", NS)

    deployment = kube.reconcile(NS, "api")

    by_image = _replicasets(kube)
    old, new = by_image["shop/api:v1"], by_image["shop/api:v2"]
    assert old["metadata"]["annotations"][REVISION] == "1"
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert deployment["metadata"]["annotations"][REVISION] == "2"
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 3)
    hash_label = new["spec"]["template"]["metadata"]["labels"]["pod-template-hash"]
    assert new["metadata"]["name"] == f"api-{hash_label}"
    assert new["spec"]["selector"]["matchLabels"] == {"app": "api", "pod-template-hash": hash_label}
    assert hash_label == compute_hash(deployment["spec"]["template"])
    assert new["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
    pods = kube.list("pods", NS, label_selector="app=api")
    assert len(pods) == 3
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in pods} == {hash_label}
    status = deployment["status"]
    assert status["observedGeneration"] == 2
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (3, 3, 3)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conditions["Available"]["status"] == "True"


def test_rollout_status_succeeds_once_reconciled(kube: FakeKube, kubectl: Kubectl) -> None:
    kube.create_deployment(NS, "api", replicas=2)
    kube.reconcile(NS, "api")

    result = kubectl("rollout", "status", "deployment/api", "-n", NS, "--timeout=5s")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'deployment "api" successfully rolled out'


def test_rollout_status_times_out_while_pods_are_unready(kube: FakeKube, kubectl: Kubectl) -> None:
    kube.create_deployment(NS, "api", replicas=2)
    kube.reconcile(NS, "api", ready=False)

    result = kubectl("rollout", "status", "deployment/api", "-n", NS, "--timeout=1s")

    assert result.returncode != 0
    assert 'Waiting for deployment "api" rollout to finish: 0 of 2 updated' in result.stdout
    assert "timed out" in result.stderr
    watch = [r for r in kube.requests if r.query.get("watch") == "true"]
    assert watch and watch[0].query["fieldSelector"] == "metadata.name=api"


def test_rollout_status_fails_at_the_progress_deadline(kube: FakeKube, kubectl: Kubectl) -> None:
    kube.create_deployment(NS, "api")
    kube.reconcile(NS, "api", ready=False)
    kube.stall(NS, "api")

    result = kubectl("rollout", "status", "deployment/api", "-n", NS, "--timeout=5s")

    assert result.returncode != 0
    assert 'error: deployment "api" exceeded its progress deadline' in result.stderr


def test_rollout_status_follows_the_watch_until_the_rollout_completes(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    kube.create_deployment(NS, "api", image="shop/api:v1", replicas=2)
    kube.reconcile(NS, "api")
    kubectl("set", "image", "deployment/api", "api=shop/api:v2", "-n", NS)
    waiting = kubectl.start("rollout", "status", "deployment/api", "-n", NS, "--timeout=20s")
    try:
        deadline = time.monotonic() + 10
        while not any(r.query.get("watch") == "true" for r in kube.requests):
            assert waiting.poll() is None and time.monotonic() < deadline, "kubectl never watched"
            time.sleep(0.05)
        kube.reconcile(NS, "api", ready=False)
        kube.reconcile(NS, "api")
        out, err = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "Waiting for deployment spec update to be observed..."
    assert lines[-1] == 'deployment "api" successfully rolled out'


def test_rollout_history_lists_the_revisions_with_their_change_cause(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    kube.create_deployment(NS, "api", image="shop/api:v1")
    kube.reconcile(NS, "api")
    kubectl("set", "image", "deployment/api", "api=shop/api:v2", "-n", NS)
    annotate = kubectl("annotate", "deployment/api", "kubernetes.io/change-cause=ship v2", "-n", NS)
    kube.reconcile(NS, "api")

    result = kubectl("rollout", "history", "deployment/api", "-n", NS)

    assert annotate.returncode == 0, annotate.stderr
    assert [r.content_type for r in kube.requests if r.method == "PATCH"][-1] == (
        "application/merge-patch+json"
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 1) for line in result.stdout.strip().splitlines()[2:]]
    assert rows == [["1", "<none>"], ["2", "ship v2"]]


def test_rollout_undo_revives_the_old_replicaset_under_the_next_revision(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    kube.create_deployment(NS, "api", image="shop/api:v1", replicas=2)
    kube.reconcile(NS, "api")
    kubectl("set", "image", "deployment/api", "api=shop/api:v2", "-n", NS)
    kube.reconcile(NS, "api")

    undo = kubectl("rollout", "undo", "deployment/api", "-n", NS)
    deployment = kube.reconcile(NS, "api")
    history = kubectl("rollout", "history", "deployment/api", "-n", NS)

    assert undo.returncode == 0, undo.stderr
    assert undo.stdout.strip() == "deployment.apps/api rolled back"
    patch = next(r for r in kube.requests if r.content_type == "application/json-patch+json")
    assert [op["path"] for op in patch.body] == ["/spec/template", "/metadata/annotations"]
    assert _image(deployment) == "shop/api:v1"
    assert "pod-template-hash" not in deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["metadata"]["annotations"][REVISION] == "3"
    by_image = _replicasets(kube)
    assert len(by_image) == 2  # the v1 ReplicaSet came back; no third one
    revived = by_image["shop/api:v1"]["metadata"]["annotations"]
    assert (revived[REVISION], revived["deployment.kubernetes.io/revision-history"]) == ("3", "1")
    assert [line.split()[0] for line in history.stdout.strip().splitlines()[2:]] == ["2", "3"]
    assert kubectl("rollout", "status", "deployment/api", "-n", NS).returncode == 0


def test_rollout_undo_refuses_a_paused_deployment(kube: FakeKube, kubectl: Kubectl) -> None:
    kube.create_deployment(NS, "api", image="shop/api:v1")
    kube.reconcile(NS, "api")
    kubectl("set", "image", "deployment/api", "api=shop/api:v2", "-n", NS)
    kube.reconcile(NS, "api")

    pause = kubectl("rollout", "pause", "deployment/api", "-n", NS)
    undo = kubectl("rollout", "undo", "deployment/api", "-n", NS)

    assert pause.returncode == 0, pause.stderr
    assert kube.get("deployments", NS, "api")["spec"]["paused"] is True
    assert undo.returncode != 0
    assert "you cannot rollback a paused deployment" in undo.stderr


def test_old_replicasets_beyond_the_history_limit_are_deleted(kube: FakeKube) -> None:
    kube.create_deployment(NS, "api", image="shop/api:v0")
    kube.patch("deployments", NS, "api", {"spec": {"revisionHistoryLimit": 2}})
    kube.reconcile(NS, "api")
    for version in range(4):
        kube.patch(
            "deployments",
            NS,
            "api",
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "api", "image": f"v{version}"}]}}
                }
            },
        )
        kube.reconcile(NS, "api")

    kept = sorted(
        int(rs["metadata"]["annotations"][REVISION]) for rs in kube.list("replicasets", NS)
    )

    assert kept == [3, 4, 5]  # the current one and two old ones


# --- the kubernetes client against the fake ------------------------------------------------


def test_the_client_reads_lists_and_replaces_with_its_strict_models(
    kube: FakeKube, apps: k8s_client.AppsV1Api
) -> None:
    kube.create_deployment(NS, "api", replicas=2)
    kube.reconcile(NS, "api")

    deployment = apps.read_namespaced_deployment("api", NS)
    listed = apps.list_namespaced_replica_set(NS, label_selector="app=api")
    deployment.spec.replicas = 4
    replaced = apps.replace_namespaced_deployment("api", NS, deployment)

    assert deployment.spec.strategy.rolling_update.max_surge == "25%"
    assert deployment.spec.revision_history_limit == 10
    assert deployment.spec.progress_deadline_seconds == 600
    assert deployment.metadata.uid and deployment.metadata.creation_timestamp
    assert [rs.metadata.annotations[REVISION] for rs in listed.items] == ["1"]
    assert replaced.spec.replicas == 4
    assert replaced.metadata.generation == 2
    assert replaced.status.observed_generation == 1  # PUT keeps the status


def test_a_stale_resource_version_conflicts(kube: FakeKube, apps: k8s_client.AppsV1Api) -> None:
    kube.create_deployment(NS, "api")
    stale = apps.read_namespaced_deployment("api", NS)
    kube.reconcile(NS, "api")  # the controller writes status: a newer resourceVersion

    with pytest.raises(ApiException) as raised:
        apps.replace_namespaced_deployment("api", NS, stale)

    assert raised.value.status == 409
    assert "the object has been modified" in raised.value.body


def test_errors_are_status_documents(kube: FakeKube, apps: k8s_client.AppsV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", NS)
    kube.create_deployment(NS, "api")
    with pytest.raises(ApiException) as duplicate:
        apps.create_namespaced_deployment(
            NS, {"metadata": {"name": "api"}, "spec": kube.get("deployments", NS, "api")["spec"]}
        )
    with pytest.raises(ApiException) as mismatch:
        apps.create_namespaced_deployment(
            NS,
            {
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "other"}},
                        "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                    },
                },
            },
        )

    assert (missing.value.status, duplicate.value.status, mismatch.value.status) == (404, 409, 422)
    assert '"reason":"NotFound"' in missing.value.body.replace(" ", "")
    assert 'deployments.apps \\"nope\\" not found' in missing.value.body
    assert "`selector` does not match template `labels`" in mismatch.value.body


def test_status_writes_do_not_bump_the_generation(kube: FakeKube) -> None:
    deployment = kube.create_deployment(NS, "api")
    deployment["status"] = {"observedGeneration": 1}
    deployment["metadata"]["annotations"] = {REVISION: "1"}

    written = kube.update("deployments", deployment, subresource="status")
    annotated = kube.patch("deployments", NS, "api", {"metadata": {"annotations": {"team": "a"}}})

    assert written["metadata"]["generation"] == 1
    assert written["status"] == {"observedGeneration": 1}
    assert annotated["metadata"]["generation"] == 2  # Deployment annotations do bump it


def test_the_python_watch_streams_changes(kube: FakeKube, apps: k8s_client.AppsV1Api) -> None:
    from kubernetes import watch

    kube.create_deployment(NS, "api")
    listed = apps.list_namespaced_deployment(NS)
    kube.reconcile(NS, "api")

    events = watch.Watch().stream(
        apps.list_namespaced_deployment,
        NS,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=1,
    )
    seen = [(e["type"], e["object"].status.observed_generation) for e in events]

    assert seen and all(kind == "MODIFIED" for kind, _ in seen)
    assert seen[-1][1] == 1


# --- patches and selectors -----------------------------------------------------------------


def test_strategic_merge_merges_containers_by_name_and_honours_directives() -> None:
    original = {
        "containers": [
            {"name": "api", "image": "api:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "proxy:1"},
        ],
        "tolerations": [{"key": "a"}],
        "keep": 1,
        "drop": 2,
    }
    patch = {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "api"}],
        "containers": [
            {"name": "api", "image": "api:2", "env": [{"name": "B", "value": "2"}]},
            {"name": "sidecar", "$patch": "delete"},
        ],
        "tolerations": [{"key": "b"}],
        "drop": None,
    }

    merged = strategic_merge_patch(original, patch)

    assert merged == {
        "containers": [
            {
                "name": "api",
                "image": "api:2",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ],
        "tolerations": [{"key": "b"}],  # no merge key: replaced
        "keep": 1,
    }
    assert strategic_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"$patch": "replace", "d": 3}}) == {
        "a": {"d": 3}
    }


def test_json_patch_and_merge_patch() -> None:
    doc = {"metadata": {"annotations": {"a": "1"}}, "spec": {"list": [1, 2]}}
    ops = [
        {"op": "replace", "path": "/metadata/annotations", "value": {"b": "2"}},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "remove", "path": "/spec/list/0"},
        {"op": "copy", "from": "/spec/list", "path": "/spec/copied"},
        {"op": "test", "path": "/spec/copied/1", "value": 3},
        {"op": "add", "path": "/metadata/labels~1x", "value": "escaped"},
    ]

    assert json_patch(doc, ops) == {
        "metadata": {"annotations": {"b": "2"}, "labels/x": "escaped"},
        "spec": {"list": [2, 3], "copied": [2, 3]},
    }
    assert doc["spec"] == {"list": [1, 2]}  # patched in a copy
    with pytest.raises(ValueError, match="non-existent"):
        json_patch(doc, [{"op": "replace", "path": "/metadata/labels", "value": {}}])
    with pytest.raises(ValueError, match="not equal"):
        json_patch(doc, [{"op": "test", "path": "/spec/list/0", "value": 2}])
    with pytest.raises(ValueError, match="list of operations"):
        json_patch(doc, {"op": "remove", "path": "/spec"})
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": None}, "d": [2]}) == {
        "a": {"b": 1},
        "d": [2],
    }


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=api", {"app": "api"}, True),
        ("app==api,tier!=db", {"app": "api", "tier": "web"}, True),
        ("app in (api, web),!canary", {"app": "web"}, True),
        ("app in (api, web),!canary", {"app": "web", "canary": "1"}, False),
        ("tier notin (db)", {}, True),
        ("tier", {}, False),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector)(labels) is expected
