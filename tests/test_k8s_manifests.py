"""The Kubernetes manifests under deploy/kubernetes: valid objects, least-privilege RBAC
derived from the API calls the code makes, hardened two-replica Deployments for the web tier
and the workers that scale separately, no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

from bot.config.loader import check_config, load_config
from bot.config.probe_specs import KubernetesProbe, looks_like_secret

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
FILES = sorted(MANIFESTS.glob("*.yaml"))
PLACEHOLDER = "REPLACE_ME"

# Kubernetes client method -> (API group, resource, RBAC verb) it needs.
RBAC_OF: dict[str, tuple[str, str, str]] = {
    "read_namespaced_deployment": ("apps", "deployments", "get"),
    "patch_namespaced_deployment": ("apps", "deployments", "patch"),
    "list_namespaced_replica_set": ("apps", "replicasets", "list"),
    "list_namespaced_pod": ("", "pods", "list"),
    "list_node": ("", "nodes", "list"),
}
CLUSTER_SCOPED = {"nodes"}
_VERB = re.compile(r"(get|list|read|watch|create|patch|replace|delete|connect)_\w+")


def documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in FILES:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                docs.append((path, doc))
    return docs


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    (found,) = objects(kind)
    return found


def kubernetes_calls() -> dict[str, set[str]]:
    """Kubernetes API methods the bot calls (or passes on) -> the files that do."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "bot").rglob("*.py"):
        if "sandbox" in path.relative_to(ROOT).parts:  # a stand-in API server, not a client
            continue
        text = path.read_text(encoding="utf-8")
        if not re.search(r"^\s*(from|import) kubernetes\b", text, re.MULTILINE):
            continue
        methods: set[str] = set()
        for api in set(re.findall(r"\b(\w+V\d\w*Api)\b", text)):
            methods |= set(dir(getattr(kubernetes.client, api)))
        for name in re.findall(r"\.([a-z]\w*)\b", text):
            if name in methods and _VERB.fullmatch(name):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_file_parses_and_kustomize_lists_them() -> None:
    docs = documents()
    assert {p.name for p, _ in docs} == {p.name for p in FILES}
    for path, doc in docs:
        assert {"apiVersion", "kind"} <= doc.keys(), path
    kustomization = one("Kustomization")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in FILES} - {"kustomization.yaml", "secret.yaml"}
    assert "namespace" not in kustomization  # it would move the RoleBinding


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_objects_have_no_unknown_or_misspelt_fields(path: Path) -> None:
    """Each object survives a round trip through the Kubernetes client's typed models."""
    api = kubernetes.client.ApiClient()
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc is None or doc["kind"] == "Kustomization":
            continue
        model = doc["apiVersion"].split("/")[-1].capitalize() + doc["kind"]
        typed = api.deserialize(json.dumps(doc), model, "application/json")
        assert api.sanitize_for_serialization(typed) == doc, f"{path.name}: {doc['kind']}"


def test_rbac_grants_exactly_what_the_probes_and_rollbacks_call() -> None:
    calls = kubernetes_calls()
    unknown = sorted(set(calls) - set(RBAC_OF))
    assert not unknown, f"add these Kubernetes calls to RBAC_OF with what they need: {unknown}"
    assert {"read_namespaced_deployment", "patch_namespaced_deployment", "list_node"} <= set(calls)
    needed = {RBAC_OF[name] for name in calls}
    assert needed == {
        ("apps", "deployments", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "replicasets", "list"),
        ("", "pods", "list"),
        ("", "nodes", "list"),
    }

    granted = set()
    for role in objects("ClusterRole") + objects("Role"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.add((group, resource, verb))
    assert granted == needed
    assert not any("*" in part for grant in granted for part in grant)


def test_workloads_are_granted_per_namespace_and_nodes_cluster_wide() -> None:
    account = one("ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    roles = {role["metadata"]["name"]: role for role in objects("ClusterRole")}
    for binding in objects("RoleBinding") + objects("ClusterRoleBinding"):
        assert binding["subjects"] == [subject]
        role = roles[binding["roleRef"]["name"]]
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        if binding["kind"] == "ClusterRoleBinding":
            assert resources <= CLUSTER_SCOPED, "namespaced rights must not be cluster-wide"
        else:
            assert not resources & CLUSTER_SCOPED
    bound = {b["roleRef"]["name"] for b in objects("RoleBinding") + objects("ClusterRoleBinding")}
    assert bound == set(roles)


ARGS = {
    "web": ["deploybot", "serve", "--role", "web"],
    "worker": ["deploybot", "worker"],
}


def deployment(component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in objects("Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.mark.parametrize("component", sorted(ARGS))
def test_deployment_runs_two_hardened_replicas_with_health_probes(component: str) -> None:
    spec = deployment(component)["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]

    (main,) = pod["containers"]
    (migrate,) = pod["initContainers"]
    assert migrate["args"] == ["deploybot", "db", "upgrade"]
    assert main["args"] == ARGS[component]
    secret_name = one("Secret")["metadata"]["name"]
    for container in (main, migrate):
        assert "command" not in container, "keep the image's entrypoint (tini)"
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        assert {"secretRef": {"name": secret_name}} in container["envFrom"]

    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["PORT"] == str(ports["http"])
    assert "SLACK_APP_TOKEN" not in env  # HTTP mode
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    config_dir = str(Path(env["DEPLOYBOT_CONFIG"]).parent)
    config_map = volumes[mounts[config_dir]]["configMap"]["name"]
    assert config_map == one("ConfigMap")["metadata"]["name"]
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_web_and_workers_scale_separately_and_only_the_web_tier_takes_traffic() -> None:
    web, worker = deployment("web"), deployment("worker")
    assert web["metadata"]["name"] != worker["metadata"]["name"]
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in (("web", web), ("worker", worker))
    }
    for name, d in (("web", web), ("worker", worker)):
        selector = d["spec"]["selector"]["matchLabels"]
        # Each Deployment owns its pods only: scaling one leaves the other as it is.
        assert [p for p, labels in pods.items() if selects(selector, labels)] == [name]
        spread = d["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        assert spread["labelSelector"]["matchLabels"] == selector

    service = one("Service")
    assert [p for p, labels in pods.items() if selects(service["spec"]["selector"], labels)] == [
        "web"
    ]
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    # A node drain keeps one pod of each.
    budgets = objects("PodDisruptionBudget")
    covered = sorted(
        p
        for b in budgets
        for p, labels in pods.items()
        if selects(b["spec"]["selector"]["matchLabels"], labels)
    )
    assert covered == ["web", "worker"]
    assert all(b["spec"]["minAvailable"] == 1 for b in budgets)


def test_no_secret_is_written_in_the_manifests() -> None:
    secret = one("Secret")
    assert secret["stringData"], "the template names the variables the bot needs"
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER in value, f"{key} must be a placeholder"
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL"} <= secret[
        "stringData"
    ].keys()
    slack_token = re.compile(r"\bx(?:ox[abposr]|app)-[A-Za-z0-9-]{6,}")

    def strings(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return []

    for path, doc in documents():
        for text in strings(doc):
            for line in text.splitlines():
                assert not slack_token.search(line), f"{path.name}: {line}"
                assert PLACEHOLDER in line or looks_like_secret(line) is None, path.name


def test_the_configmap_holds_a_valid_config_within_the_granted_namespaces(
    tmp_path: Path,
) -> None:
    for name, text in one("ConfigMap")["data"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    config_file = tmp_path / "deploybot.yaml"
    assert check_config(config_file) == []
    config = load_config(config_file)
    touched = {p.namespace for p in config.probes.values() if isinstance(p, KubernetesProbe)}
    touched |= {
        t.namespace
        for env in config.environments.values()
        for t in env.rollback
        if t.kind == "kubernetes"
    }
    granted = {b["metadata"]["namespace"] for b in objects("RoleBinding")}
    assert touched <= granted
    pagerduty = {e.pagerduty.routing_key_env for e in config.environments.values() if e.pagerduty}
    assert pagerduty <= one("Secret")["stringData"].keys()


def readme_objects(kind: str) -> list[dict[str, Any]]:
    """The objects of ``kind`` in the README's YAML blocks (indented ones included)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for indent, block in re.findall(r"^( *)```yaml\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL):
        body = "\n".join(line[len(indent) :] for line in block.splitlines())
        for doc in yaml.safe_load_all(body):
            if isinstance(doc, dict) and doc.get("kind") == kind:
                found.append(doc)
    return found


def test_the_readme_ingress_routes_slack_to_the_service_over_tls() -> None:
    (ingress,) = readme_objects("Ingress")
    api = kubernetes.client.ApiClient()
    typed = api.deserialize(json.dumps(ingress), "V1Ingress", "application/json")
    assert api.sanitize_for_serialization(typed) == ingress
    service = one("Service")
    assert ingress["metadata"]["namespace"] == service["metadata"]["namespace"]
    ((rule,),) = [ingress["spec"]["rules"]]
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/slack/events"  # /metrics and the rest stay inside
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_readme_rolebinding_is_the_manifests_one_in_another_namespace() -> None:
    (shown,) = readme_objects("RoleBinding")
    (bundled,) = objects("RoleBinding")
    assert shown["metadata"]["namespace"] != bundled["metadata"]["namespace"]
    assert {**shown, "metadata": {**shown["metadata"], "namespace": "default"}} == bundled
