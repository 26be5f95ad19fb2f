"""Through the bus with an injected clock: a refused *Start deployment* redraws the summary
(so it shows the sign-off that lapsed), config validation of the new settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain.commands import SignOff, StartDeployment
from bot.domain.errors import ConfigError, GateClosed
from bot.storage.uow import UnitOfWork
from tests.e2e import EXAMPLES

NOW = datetime(2026, 11, 26, 9, tzinfo=UTC)


def write(tmp_path: Path, **staging: Any) -> Path:
    config = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    config["environments"]["staging"]["checklist"] = str(EXAMPLES / "checklists" / "minimal.yaml")
    config["environments"]["staging"].update(staging)
    path = tmp_path / "deploybot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_refused_start_redraws_the_summary_with_the_lapsed_sign_off(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    signoffs = [{"role": "QA Lead", "by": ["approvers"], "valid_for": "4h"}]
    now = [NOW]
    service = DeployService(
        config=load_config(write(tmp_path, signoffs=signoffs)),
        session_factory=session_factory,
        clock=lambda: now[0],
    )
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None
    service.act(session.id, SignOff("qa-lead"), "U0APPROVER1")
    with UnitOfWork(session_factory) as uow:
        uow.slack_messages.put(
            session.id, "summary", "C1", "1.2", version=3, digest="d", sent_at=NOW
        )
        uow.commit()
    now[0] = NOW + timedelta(hours=5)
    with pytest.raises(GateClosed, match=r"lapsed: <@U0APPROVER1> at 09:00 UTC"):
        service.act(session.id, StartDeployment(), "U0DEPLOYER")
    with UnitOfWork(session_factory) as uow:
        shown = uow.slack_messages.for_session(session.id)["summary"]
    assert shown.version == -1  # drawn again at the next publication, with ``now``


@pytest.mark.parametrize(
    ("staging", "message"),
    [
        ({"requires": {"environment": "staging", "within": "7d"}}, "is not another environment"),
        ({"requires": {"environment": "qa", "within": "7d"}}, "'qa' is not another environment"),
        (
            {"emergency": {"roles": ["oncall"], "retrospective": {"by": ["nobody"]}}},
            "unknown role 'nobody'",
        ),
        (
            {
                "emergency": {
                    "roles": ["oncall"],
                    "skip_signoffs": ["Security"],
                    "retrospective": {"by": ["approvers"]},
                }
            },
            "emergency.skip_signoffs names Security, not a sign-off of this environment",
        ),
        (
            {
                "emergency": {
                    "roles": ["oncall"],
                    "skip_sections": ["smoke-tests"],
                    "retrospective": {"by": ["approvers"]},
                }
            },
            "environments.staging.emergency.skip_sections: unknown section 'smoke-tests'",
        ),
    ],
)
def test_bad_change_control_settings_are_refused(
    tmp_path: Path, staging: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, **staging))
    assert message in str(refused.value)


def test_good_settings_load(tmp_path: Path) -> None:
    config = yaml.safe_load(write(tmp_path).read_text())
    prod = dict(config["environments"]["staging"], channel="#deploys-prod")
    prod["requires"] = {"environment": "staging", "within": "7d"}
    prod["emergency"] = {
        "roles": ["oncall"],
        "skip_signoffs": ["QA Lead"],
        "skip_sections": ["pre-deployment"],
        "retrospective": {"role": "Post-incident review", "by": ["approvers"]},
    }
    config["environments"]["prod"] = prod
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config))
    env = load_config(path).environment("prod")
    assert env.requires is not None and env.requires.rule.within == timedelta(days=7)
    assert env.emergency is not None
    policy = env.emergency.policy(env.signoff_keys)
    assert (policy.skip_signoffs, policy.skip_sections) == (("qa-lead",), ("pre-deployment",))
    assert policy.retrospective.key == "post-incident-review"
