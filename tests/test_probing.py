"""A session's probe round: items ticked or failed, severity from the item or the probe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from bot.app.probe_rounds import SessionProbes
from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SessionState
from bot.domain.checklist import Severity
from bot.domain.commands import SignOff, StartDeployment
from bot.storage.models import SessionRow


def config_with(tmp_path: Path, item_severity: str | None) -> Path:
    severity = f"\n        severity: {item_severity}" if item_severity else ""
    (tmp_path / "checklist.yaml").write_text(
        "title: T\nsections:\n  - title: Checks\n    items:\n"
        f"      - text: Smoke test passes\n        probe: smoke{severity}\n"
        "      - text: Version endpoint answers\n        probe: ok\n",
        encoding="utf-8",
    )
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        f"""
roles:
  deployers: [U0DEPLOYER]
  approvers: [U0APPROVER]
probes:
  smoke: {{kind: command, argv: ["{sys.executable}", "-c", "raise SystemExit(3)"]}}
  ok: {{kind: command, argv: ["{sys.executable}", "-c", "print('v2')"]}}
environments:
  prod:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    signoffs: [{{role: QA Lead, by: [approvers]}}]
""",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize(
    ("item_severity", "expected", "state"),
    [
        (None, Severity.CRITICAL, SessionState.FAILED),  # the probe's default
        ("warning", Severity.WARNING, SessionState.DEPLOYING),  # the item says it can wait
    ],
)
def test_failure_severity_comes_from_the_item_or_the_probe(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    item_severity: str | None,
    expected: Severity,
    state: SessionState,
) -> None:
    config = load_config(config_with(tmp_path, item_severity))
    service = DeployService(config=config, session_factory=session_factory)
    probes = SessionProbes(config=config, service=service)
    session = service.open(environment="prod", user_id="U0DEPLOYER")
    assert session.id is not None
    service.act(session.id, SignOff("qa-lead"), "U0APPROVER")
    service.act(session.id, StartDeployment(), "U0DEPLOYER")

    outcome = probes.run(session.id)

    after = service.get(session.id)
    assert after.progress("1.1").status.value == "failed"
    assert after.progress("1.1").severity is expected
    assert after.progress("1.1").reason == "exit 3 (expected 0)"
    assert after.progress("1.2").status.value == "done"
    assert after.state is state
    assert [r.severity for r in outcome.results if not r.ok] == [expected]
    runs = service.probe_runs(session.id)
    assert [(r.probe, r.ok, r.severity) for r in runs if r.probe == "smoke"] == [
        ("smoke", False, expected.value)
    ]


def test_metric_queries_are_templated_with_the_session_and_the_last_shipped_version(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    config = load_config(config_with(tmp_path, None))
    service = DeployService(config=config, session_factory=session_factory)
    probes = SessionProbes(config=config, service=service)
    for version, state in (("v1", "completed"), ("v2", "completed"), ("v3", "aborted")):
        session = service.open(
            environment="prod", user_id="U0DEPLOYER", service="api", version=version
        )
        with session_factory.begin() as db:
            db.execute(
                update(SessionRow)
                .where(SessionRow.id == session.id)
                .values(state=state, is_open=False)
            )
    current = service.open(environment="prod", user_id="U0DEPLOYER", service="api", version="v4")
    assert probes.template(current) == {
        "service": "api",
        "version": "v4",
        "previous_version": "v2",  # v3 was aborted: it never shipped
        "environment": "prod",
    }
    other = service.open(environment="prod", user_id="U0DEPLOYER", service="web", version="w1")
    assert probes.template(other)["previous_version"] == ""
