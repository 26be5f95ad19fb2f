"""The runbook importer suggests deploy steps for ``kubectl set image``, ``aws ecs
update-service`` and ``aws lambda update-alias``; each fits the config's ``deploy`` schema, and
the imported checklist file still loads (``config check`` names the suggestions)."""

from __future__ import annotations

import textwrap

import yaml

from bot.config.checklist_files import read_yaml_checklist
from bot.config.deploy_specs import DeployPlan
from bot.config.errors import YamlSource
from bot.runbook.parser import import_runbook

RUNBOOK = textwrap.dedent(
    """\
    # Deploy

    ## Deployment Steps

    - [ ] Roll out the new image

    ```bash
    kubectl set image deployment/api api=registry.example.com/api:v1.4.2 \\
      sidecar=registry.example.com/proxy:$PROXY_TAG -n prod --context prod-eu
    aws ecs update-service --cluster prod --service web --force-new-deployment \\
      --region eu-west-1
    aws lambda update-alias --function-name checkout --name live --function-version 7
    kubectl set image daemonset/agent agent=agent:2
    ```
    """
)


def test_deploy_commands_become_suggested_steps_that_fit_the_schema() -> None:
    result = import_runbook(RUNBOOK)
    assert [(s.kind, s.source_line) for s in result.steps] == [
        ("kubernetes", 8),
        ("ecs", 10),
        ("lambda", 12),
    ]
    kube, ecs, lmb = (s.spec for s in result.steps)
    assert kube == {
        "kind": "kubernetes",
        "deployments": ["api"],
        "containers": {
            "api": "registry.example.com/api:{version}",
            "sidecar": "registry.example.com/proxy:{version}",
        },
        "namespace": "prod",
        "context": "prod-eu",
    }
    assert ecs == {
        "kind": "ecs",
        "cluster": "prod",
        "service": "web",
        "region": "eu-west-1",
        "containers": {"CONTAINER": "IMAGE:{version}"},
    }
    assert lmb == {
        "kind": "lambda",
        "function": "checkout",
        "alias": "live",
        "image_uri": "IMAGE:{version}",
    }
    plan = DeployPlan.model_validate([kube, ecs, lmb])  # paste-able as they are
    assert [step.kind for step in plan.steps] == ["kubernetes", "ecs", "lambda"]
    notes = "\n".join(result.skipped)
    assert "line 10: ecs deploy step: fill in the containers and their images" in notes
    assert "kubectl set image daemonset/agent: only deployments are supported" in notes
    assert "suggested deploy steps: 3" in result.summary_lines()
    assert [s["kind"] for s in result.to_json()["deploy_steps"]] == ["kubernetes", "ecs", "lambda"]


def test_the_imported_file_loads_and_config_check_names_the_steps() -> None:
    result = import_runbook(RUNBOOK)
    text = result.to_yaml()
    assert [s["step"] for s in yaml.safe_load(text)["suggested_deploy_steps"]] == [
        s.spec for s in result.steps
    ]
    loaded = read_yaml_checklist(YamlSource("checklist.yaml", text), probes=())
    assert loaded.checklist is not None
    warnings = [str(w) for w in loaded.warnings]
    assert any("3 suggested deploy step(s) (runbook lines 8, 10, 12)" in w for w in warnings)


def test_a_runbook_without_deploy_commands_has_no_deploy_step_key() -> None:
    result = import_runbook("# Deploy\n\n- [ ] deploy by hand\n")
    assert result.steps == ()
    assert "suggested_deploy_steps" not in yaml.safe_load(result.to_yaml())
