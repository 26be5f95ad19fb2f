"""The bus fills in the freeze in force from config and its clock: a freeze that begins
while a session is open stops its deployment until a captain overrides it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.loader import load_config
from bot.domain import SessionState
from bot.domain.commands import OverrideFreeze, SignOff, StartDeployment
from bot.domain.errors import DomainError, PermissionDenied
from tests.test_change_control_e2e import frozen_config

THURSDAY = datetime(2026, 11, 26, 12, tzinfo=UTC)  # the weekly freeze starts Friday 15:00 UTC


def test_a_freeze_that_begins_mid_session(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    path = frozen_config(tmp_path)
    config = yaml.safe_load(path.read_text())
    del config["environments"]["staging"]["freezes"][0]  # keep the weekly one only
    path.write_text(yaml.safe_dump(config))
    now = [THURSDAY]
    service = DeployService(
        config=load_config(path), session_factory=session_factory, clock=lambda: now[0]
    )
    session = service.open(environment="staging", user_id="U0DEPLOYER")
    assert session.id is not None and session.freeze_override is None
    with pytest.raises(DomainError, match="No change freeze is in force"):
        service.act(session.id, OverrideFreeze("early"), "U0CAPTAIN")
    service.act(session.id, SignOff("qa-lead"), "U0APPROVER1")
    service.act(session.id, SignOff("devops-lead"), "U0APPROVER2")

    now[0] = THURSDAY + timedelta(days=1, hours=4)  # Friday 16:00 UTC: frozen
    with pytest.raises(DomainError, match="Deployment can't start during a change freeze"):
        service.act(session.id, StartDeployment(), "U0DEPLOYER")
    with pytest.raises(PermissionDenied):
        service.act(session.id, OverrideFreeze("hotfix"), "U0DEPLOYER")
    service.act(session.id, OverrideFreeze("hotfix for INC-9"), "U0CAPTAIN")
    service.act(session.id, StartDeployment(), "U0DEPLOYER")
    assert service.get(session.id).state is SessionState.DEPLOYING
    history = service.history(session.id)
    refused = [e.data["command"] for e in history if e.kind == "refused"]
    assert refused == ["OverrideFreeze", "StartDeployment", "OverrideFreeze"]
    overridden = [e for e in history if e.kind == "freeze_overridden"]
    assert [(e.actor, e.data["reason"]) for e in overridden] == [("U0CAPTAIN", "hotfix for INC-9")]


def test_a_refused_start_is_audited_on_the_environment(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    service = DeployService(
        config=load_config(frozen_config(tmp_path)),
        session_factory=session_factory,
        clock=lambda: THURSDAY,
    )
    with pytest.raises(DomainError, match="Black Friday"):
        service.open(environment="staging", user_id="U0DEPLOYER")
    refused = [e for e in service.environment_history("staging") if e.kind == "refused"]
    assert [(e.actor, e.data["command"]) for e in refused] == [("U0DEPLOYER", "start")]
