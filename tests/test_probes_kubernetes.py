"""Kubernetes probes and ``bot.integrations.kubernetes``: rollouts judged, undos planned as kubectl.

The comparisons run the real kubectl and the bot side by side against the fake API server
(``tests.support.kube``): for each rollout state, ``kubectl rollout status --watch=false`` and
``rollout_status`` / the probe must agree on success and on the sentence; for each history,
``kubectl rollout undo`` and ``undo_patch`` (sent by the ``kubernetes`` client to a second
server in the same starting state) must send the same patch and leave the same Deployment.
"""

from __future__ import annotations

import copy
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from bot.config.probe_specs import KubernetesProbe
from bot.integrations import kubernetes as botkube
from bot.integrations.kubernetes import RollbackError, plan_undo, rollout_status, undo_patch
from bot.integrations.probes.base import ProbeContext, ProbeResult, run_probe
from tests.support.kube import KUBECTL, FakeKube, Kubectl
from tests.support.timing import HANG_MARGIN

NS = "shop"
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def _kubectl_for(server: FakeKube, directory: Path) -> Kubectl:
    if not os.access(KUBECTL, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"kubectl is not installed at {KUBECTL} (never skipped in CI)")
        pytest.skip(f"kubectl is not installed at {KUBECTL}")
    (directory / "home").mkdir(parents=True, exist_ok=True)
    return Kubectl(server.kubeconfig(directory / "kubeconfig"), directory / "home")


@pytest.fixture
def kubectl(kube: FakeKube, tmp_path: Path) -> Kubectl:
    return _kubectl_for(kube, tmp_path / "kubectl")


@pytest.fixture
def ctx(kube: FakeKube, tmp_path: Path) -> ProbeContext:
    return ProbeContext(environ={"KUBECONFIG": str(kube.kubeconfig(tmp_path / "probe-config"))})


def _probe(ctx: ProbeContext, **fields: Any) -> ProbeResult:
    return run_probe("k8s", KubernetesProbe(namespace=NS, **fields), ctx=ctx)


def _set_image(server: FakeKube, image: str, *, cause: str | None = None) -> None:
    """What ``kubectl set image`` (and ``kubectl annotate`` of the change cause) sends."""
    patch: dict[str, Any] = {
        "spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}
    }
    if cause:
        patch["metadata"] = {"annotations": {CHANGE_CAUSE: cause}}
    server.patch("deployments", NS, "api", patch)


def _image(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


# --- rollout_status on its own -------------------------------------------------------------


def _deployment(
    *, generation: int = 2, want: int | None = 3, conditions: Any = (), **status: Any
) -> dict[str, Any]:
    """A Deployment wanting ``want`` replicas, with ``status`` fields as given."""
    spec = {} if want is None else {"replicas": want}
    status = {"observedGeneration": 2, **status, "conditions": list(conditions)}
    return {
        "metadata": {"name": "api", "generation": generation},
        "spec": spec,
        "status": status,
    }


_STALLED = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
_WAIT = 'Waiting for deployment "api" rollout to finish: '


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        pytest.param(
            _deployment(generation=3, want=3, updatedReplicas=3, availableReplicas=3),
            (False, "Waiting for deployment spec update to be observed..."),
            id="spec-not-observed",
        ),
        pytest.param(
            _deployment(generation=3, conditions=_STALLED),
            (False, "Waiting for deployment spec update to be observed..."),
            id="not-observed-before-deadline",
        ),
        pytest.param(
            _deployment(conditions=_STALLED, want=3, updatedReplicas=3, availableReplicas=3),
            (False, 'deployment "api" exceeded its progress deadline'),
            id="deadline-even-when-counts-look-done",
        ),
        pytest.param(
            _deployment(want=3, updatedReplicas=1),
            (False, _WAIT + "1 out of 3 new replicas have been updated..."),
            id="updating",
        ),
        pytest.param(
            _deployment(want=3, updatedReplicas=3, availableReplicas=3, replicas=4),
            (False, _WAIT + "1 old replicas are pending termination..."),
            id="old-pending",
        ),
        pytest.param(
            _deployment(updatedReplicas=3, availableReplicas=1, replicas=3),
            (False, _WAIT + "1 of 3 updated replicas are available..."),
            id="unavailable",
        ),
        pytest.param(
            _deployment(updatedReplicas=3, availableReplicas=3, replicas=3),
            (True, 'deployment "api" successfully rolled out'),
            id="done",
        ),
        pytest.param(
            {"metadata": {"name": "api", "generation": 1}, "spec": {"replicas": 2}, "status": {}},
            (False, "Waiting for deployment spec update to be observed..."),
            id="fresh-status-empty",
        ),
        pytest.param(
            _deployment(want=None),
            (True, 'deployment "api" successfully rolled out'),
            id="no-replicas-field-skips-that-check",
        ),
        pytest.param(
            {
                "metadata": {"name": "api", "generation": 2},
                "spec": {"replicas": 0},
                "status": {"observedGeneration": 3},
            },
            (True, 'deployment "api" successfully rolled out'),
            id="scaled-to-zero-zeros-omitted",
        ),
    ],
)
def test_rollout_status_follows_kubectls_order_of_checks(
    deployment: dict[str, Any], expected: tuple[bool, str]
) -> None:
    assert rollout_status(deployment) == expected


def test_rollout_status_checks_the_expected_revision() -> None:
    deployment = _deployment(updatedReplicas=3, availableReplicas=3, replicas=3)
    deployment["metadata"]["annotations"] = {REVISION: "4"}

    assert rollout_status(deployment, expected_revision=4)[0] is True
    assert rollout_status(deployment, expected_revision=3) == (
        False,
        "desired revision (3) is different from the running revision (4)",
    )


# --- the bot and kubectl judge the same states alike ---------------------------------------


def _fresh(server: FakeKube) -> None:
    server.create_deployment(NS, "api", replicas=3)


def _complete(server: FakeKube) -> None:
    server.create_deployment(NS, "api", replicas=3)
    server.reconcile(NS, "api")


def _updated_not_reconciled(server: FakeKube) -> None:
    _complete(server)
    _set_image(server, "shop/api:v2")


def _partially_available(server: FakeKube) -> None:
    server.create_deployment(NS, "api", replicas=3)
    server.reconcile(NS, "api", ready=2)


def _unready_rollout(server: FakeKube) -> None:
    _updated_not_reconciled(server)
    server.reconcile(NS, "api", ready=False)  # maxUnavailable 0: old pods stay


def _old_pending_termination(server: FakeKube) -> None:
    server.create_deployment(NS, "api", replicas=1)
    server.reconcile(NS, "api")
    _set_image(server, "shop/api:v2")
    server.reconcile(NS, "api", ready=False)


def _unready_fresh(server: FakeKube) -> None:
    server.create_deployment(NS, "api", replicas=2)
    server.reconcile(NS, "api", ready=False)


def _stalled(server: FakeKube) -> None:
    _unready_rollout(server)
    server.stall(NS, "api")


def _recovered(server: FakeKube) -> None:
    _stalled(server)
    server.reconcile(NS, "api")


@pytest.mark.parametrize(
    "arrange",
    [
        _fresh,
        _updated_not_reconciled,
        _partially_available,
        _unready_rollout,
        _old_pending_termination,
        _unready_fresh,
        _stalled,
        _complete,
        _recovered,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_the_bot_judges_a_rollout_exactly_as_kubectl(
    arrange: Callable[[FakeKube], None], kube: FakeKube, kubectl: Kubectl, ctx: ProbeContext
) -> None:
    arrange(kube)

    result = kubectl("rollout", "status", "deployment/api", "-n", NS, "--watch=false")
    ours = rollout_status(kube.get("deployments", NS, "api"))
    probe = _probe(ctx, check="rollout", deployment="api")

    kubectl_ok = result.returncode == 0 and "successfully rolled out" in result.stdout
    said = result.stdout.strip() if result.returncode == 0 else result.stderr.strip()
    assert ours == (kubectl_ok, said.removeprefix("error: "))
    assert (probe.ok, probe.summary) == ours


# --- undo: the same patch and the same result as kubectl -----------------------------------


def _history_v1_v2(server: FakeKube) -> None:
    server.create_deployment(NS, "api", image="shop/api:v1", replicas=2)
    server.reconcile(NS, "api")
    _set_image(server, "shop/api:v2")
    server.reconcile(NS, "api")


def _history_with_annotations(server: FakeKube) -> None:
    server.create_deployment(
        NS,
        "api",
        image="shop/api:v1",
        annotations={
            CHANGE_CAUSE: "ship v1",
            "team": "payments",
            "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Deployment"}',
        },
    )
    server.reconcile(NS, "api")
    _set_image(server, "shop/api:v2", cause="ship v2")
    server.patch("deployments", NS, "api", {"metadata": {"annotations": {"team": "checkout"}}})
    server.reconcile(NS, "api")


def _history_undone_once(server: FakeKube) -> None:
    """v1, v2, then back to v1 (revision 3): a second undo goes to v2 again."""
    _history_v1_v2(server)
    _set_image(server, "shop/api:v1")
    server.reconcile(NS, "api")


def _history_unready_v3(server: FakeKube) -> None:
    _history_v1_v2(server)
    _set_image(server, "shop/api:v3")
    server.reconcile(NS, "api", ready=False)
    server.stall(NS, "api")


def _our_undo(server: FakeKube, config: Path, to_revision: int) -> list[dict[str, Any]] | None:
    """The bot's undo through the kubernetes client: read, plan, send the JSON patch."""
    api = botkube.api_client(environ={"KUBECONFIG": str(config)})
    with api:
        apps = k8s_client.AppsV1Api(api)
        deployment = api.sanitize_for_serialization(apps.read_namespaced_deployment("api", NS))
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )
        listed = apps.list_namespaced_replica_set(NS, label_selector=selector)
        replicasets = [api.sanitize_for_serialization(rs) for rs in listed.items]
        patch = undo_patch(deployment, replicasets, to_revision=to_revision)
        if patch is not None:
            apps.patch_namespaced_deployment("api", NS, patch)
    return patch


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("arrange", "to_revision"),
    [
        (_history_v1_v2, 0),
        (_history_with_annotations, 0),
        (_history_undone_once, 0),
        (_history_unready_v3, 0),
        (_history_unready_v3, 1),
    ],
    ids=["v1-v2", "annotations", "undo-of-undo", "unready-v3", "to-revision-1"],
)
def test_undo_patch_does_what_kubectl_rollout_undo_does(
    arrange: Callable[[FakeKube], None], to_revision: int, tmp_path: Path
) -> None:
    with FakeKube(seed=7) as theirs, FakeKube(seed=7) as ours:
        arrange(theirs)
        arrange(ours)
        kubectl = _kubectl_for(theirs, tmp_path / "theirs")
        args = [f"--to-revision={to_revision}"] if to_revision else []

        result = kubectl("rollout", "undo", "deployment/api", "-n", NS, *args)
        patch = _our_undo(ours, ours.kubeconfig(tmp_path / "ours"), to_revision)
        after = [server.reconcile(NS, "api") for server in (theirs, ours)]

        assert result.returncode == 0, result.stderr
        sent = next(r for r in theirs.requests if r.content_type == "application/json-patch+json")
        # Go writes the template's zero creationTimestamp as null; the server drops it.
        assert patch == _without_nulls(sent.body)
        assert after[0]["spec"]["template"] == after[1]["spec"]["template"]
        assert after[0]["metadata"]["annotations"] == after[1]["metadata"]["annotations"]
        assert [rs["metadata"]["annotations"] for rs in theirs.list("replicasets", NS)] == [
            rs["metadata"]["annotations"] for rs in ours.list("replicasets", NS)
        ]


def test_undo_restores_the_previous_image_and_takes_the_next_revision(
    kube: FakeKube, tmp_path: Path
) -> None:
    _history_with_annotations(kube)

    _our_undo(kube, kube.kubeconfig(tmp_path / "config"), 0)
    deployment = kube.reconcile(NS, "api")

    assert _image(deployment) == "shop/api:v1"
    assert deployment["metadata"]["annotations"] == {
        REVISION: "3",
        CHANGE_CAUSE: "ship v1",  # from the revision's ReplicaSet
        "team": "payments",  # likewise: annotations travel with the revision
        "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Deployment"}',
    }
    assert rollout_status(deployment) == (True, 'deployment "api" successfully rolled out')


def _undo_plan_from(server: FakeKube, to_revision: int = 0) -> botkube.UndoPlan:
    return plan_undo(
        server.get("deployments", NS, "api"),
        server.list("replicasets", NS),
        to_revision=to_revision,
    )


def test_undo_is_skipped_like_kubectl_when_the_template_already_matches(
    kube: FakeKube, kubectl: Kubectl
) -> None:
    _history_v1_v2(kube)
    _set_image(kube, "shop/api:v1")  # back to v1 by hand; the controller has not run

    plan = _undo_plan_from(kube)
    result = kubectl("rollout", "undo", "deployment/api", "-n", NS)

    assert plan.patch is None
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deployment.apps/api {plan.message}"
    assert plan.message == "skipped rollback (current template already matches revision 0)"


@pytest.mark.parametrize(
    ("arrange", "args"),
    [
        (lambda s: _complete(s), []),
        (lambda s: _history_v1_v2(s), ["--to-revision=7"]),
        (
            lambda s: (
                _history_v1_v2(s),
                s.patch("deployments", NS, "api", {"spec": {"paused": True}}),
            ),
            [],
        ),
    ],
    ids=["no-history", "unknown-revision", "paused"],
)
def test_undo_refuses_with_kubectls_words(
    arrange: Callable[[FakeKube], Any], args: list[str], kube: FakeKube, kubectl: Kubectl
) -> None:
    arrange(kube)
    to_revision = int(args[0].split("=")[1]) if args else 0

    with pytest.raises(RollbackError) as refused:
        _undo_plan_from(kube, to_revision)
    result = kubectl("rollout", "undo", "deployment/api", "-n", NS, *args)

    assert result.returncode != 0
    assert result.stderr.strip() == f"error: {refused.value}"


# --- undo selection on its own -------------------------------------------------------------

_UID = "d-uid"


def _rs(
    name: str,
    revision: str | None,
    image: str,
    *,
    uid: str = _UID,
    labels: dict[str, str] | None = None,
    created: str = "2025-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    notes = dict(annotations or {})
    if revision is not None:
        notes[REVISION] = revision
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "labels": labels if labels is not None else {"app": "api", "pod-template-hash": name},
            "annotations": notes,
            "ownerReferences": [{"kind": "Deployment", "uid": uid, "controller": True}],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "api", "pod-template-hash": name}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            }
        },
    }


def _dep(image: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "api", "uid": _UID, "annotations": annotations or {}},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            },
        },
    }


def test_the_second_newest_revision_wins_whatever_the_order() -> None:
    replicasets = [
        _rs("c", "3", "v3"),
        _rs("a", "1", "v1"),
        _rs("b", "2", "v2"),
        _rs("bad", "x", "vx"),  # unparsable: skipped, as kubectl does
    ]

    for ordering in (replicasets, replicasets[::-1]):
        target = botkube.previous_revision_template(_dep("v3"), ordering)
        assert (target.revision, target.replicaset) == (2, "b")
        assert target.template["metadata"]["labels"] == {"app": "api"}  # hash label gone


def test_only_the_deployments_own_replicasets_count() -> None:
    replicasets = [
        _rs("new", "5", "v5"),
        _rs("foreign", "4", "v4", uid="someone-else"),  # selector matches, owner does not
        _rs("unlabelled", "3", "v3", labels={"app": "web"}),  # owner matches, selector does not
        _rs("mine", "2", "v2"),
    ]

    assert botkube.previous_revision_template(_dep("v5"), replicasets).replicaset == "mine"


def test_the_patch_keeps_the_deployments_bookkeeping_and_takes_the_rest_from_the_revision() -> None:
    deployment = _dep(
        "v2",
        {
            REVISION: "2",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "team": "dropped",
        },
    )
    old = _rs(
        "a",
        "1",
        "v1",
        annotations={
            CHANGE_CAUSE: "ship v1",
            "deployment.kubernetes.io/desired-replicas": "3",
            "deployment.kubernetes.io/revision-history": "0",
        },
    )
    replicasets = [old, _rs("b", "2", "v2")]
    before = copy.deepcopy(replicasets)

    patch = undo_patch(deployment, replicasets)

    assert patch == [
        {
            "op": "replace",
            "path": "/spec/template",
            "value": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": "v1"}]},
            },
        },
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {
                REVISION: "2",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                CHANGE_CAUSE: "ship v1",
            },
        },
    ]
    assert replicasets == before  # nothing the caller passed is changed


def test_undo_to_a_revision_number_and_equal_templates() -> None:
    replicasets = [_rs("a", "1", "v1"), _rs("b", "2", "v2"), _rs("c", "3", "v3")]

    assert (
        botkube.previous_revision_template(_dep("v3"), replicasets, to_revision=1).replicaset == "a"
    )
    assert undo_patch(_dep("v2"), replicasets) is None  # the deployment already has v2
    with pytest.raises(RollbackError, match="unable to find specified revision 9 in history"):
        undo_patch(_dep("v3"), replicasets, to_revision=9)


# --- probes ------------------------------------------------------------------------------


def test_pods_probe_passes_when_every_matching_pod_is_ready(
    kube: FakeKube, ctx: ProbeContext
) -> None:
    _complete(kube)

    result = _probe(ctx, check="pods", selector="app=api")

    assert result.ok, result.summary
    assert result.summary == f"3/3 pods ready (app=api in namespace {NS})"


def test_pods_probe_names_the_unready_pods(kube: FakeKube, ctx: ProbeContext) -> None:
    _partially_available(kube)
    unready = sorted(
        p["metadata"]["name"]
        for p in kube.list("pods", NS)
        if p["status"]["containerStatuses"][0]["ready"] is False
    )

    result = _probe(ctx, check="pods", selector="app=api")
    nothing = _probe(ctx, check="pods", selector="app=web")

    assert not result.ok
    assert result.summary == f"1 of 3 pods not ready: {unready[0]} (ContainersNotReady)"
    assert not nothing.ok
    assert nothing.summary == f"no pods match app=web in namespace {NS}"


def test_nodes_probe(kube: FakeKube, ctx: ProbeContext) -> None:
    none = _probe(ctx, check="nodes")
    kube.add_node("node-a")
    kube.add_node("node-b")
    healthy = _probe(ctx, check="nodes")
    kube.set_node_ready("node-b", False)
    degraded = _probe(ctx, check="nodes")

    assert (none.ok, none.summary) == (False, "the cluster has no nodes")
    assert (healthy.ok, healthy.summary) == (True, "2/2 nodes Ready")
    assert (degraded.ok, degraded.summary) == (
        False,
        "1 of 2 nodes not Ready: node-b (KubeletNotReady)",
    )


def test_an_unknown_deployment_is_reported_as_not_found(kube: FakeKube, ctx: ProbeContext) -> None:
    result = _probe(ctx, check="rollout", deployment="billing")

    assert not result.ok
    assert result.summary == f'deployment "billing" not found in namespace "{NS}"'


def test_a_silent_api_server_costs_the_timeout_and_no_more(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        config = tmp_path / "config"
        with FakeKube() as template:
            template.kubeconfig(config)
        config.write_text(config.read_text().replace(template.url, f"http://127.0.0.1:{port}"))
        ctx = ProbeContext(environ={"KUBECONFIG": str(config)})

        started = time.monotonic()
        result = _probe(ctx, check="rollout", deployment="api", timeout="1s")
        took = time.monotonic() - started

    assert not result.ok
    assert result.summary == f"Kubernetes API at http://127.0.0.1:{port} did not answer within 1s"
    assert took < 1 + HANG_MARGIN


def test_an_unreachable_api_server_fails_at_once(tmp_path: Path) -> None:
    with FakeKube() as gone:
        config = gone.kubeconfig(tmp_path / "config")
    ctx = ProbeContext(environ={"KUBECONFIG": str(config)})

    result = _probe(ctx, check="nodes")

    assert not result.ok
    assert result.summary.startswith(f"Kubernetes API at {gone.url} is unreachable")
    assert "Connection refused" in result.summary


def test_bad_configuration_is_not_runnable(kube: FakeKube, tmp_path: Path) -> None:
    missing = ProbeContext(environ={"KUBECONFIG": str(tmp_path / "nope")})
    nothing = ProbeContext(environ={"HOME": str(tmp_path)})
    config = ProbeContext(environ={"KUBECONFIG": str(kube.kubeconfig(tmp_path / "config"))})

    assert _probe(missing, check="nodes").summary == (
        f"not runnable: KUBECONFIG names no kubeconfig file that exists: {tmp_path / 'nope'}"
    )
    assert _probe(nothing, check="nodes").summary == (
        "not runnable: no kubeconfig (set KUBECONFIG) and not running in a cluster"
    )
    unknown = _probe(config, check="nodes", context="staging")
    assert unknown.summary.startswith("not runnable: bad Kubernetes configuration")
    assert "staging" in unknown.summary


def test_the_context_picks_the_cluster_from_merged_kubeconfigs(tmp_path: Path) -> None:
    with FakeKube() as prod, FakeKube() as staging:
        prod.add_node("prod-node")
        staging.add_node("staging-node", ready=False)
        paths = [
            prod.kubeconfig(tmp_path / "prod", context="prod"),
            staging.kubeconfig(tmp_path / "staging", context="staging"),
        ]
        ctx = ProbeContext(environ={"KUBECONFIG": os.pathsep.join(str(p) for p in paths)})

        default = _probe(ctx, check="nodes")
        chosen = _probe(ctx, check="nodes", context="staging")

    assert (default.ok, default.summary) == (True, "1/1 nodes Ready")
    assert not chosen.ok
    assert chosen.summary == "1 of 1 nodes not Ready: staging-node (KubeletNotReady)"
