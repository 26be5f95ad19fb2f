"""*Abort* during a deploy the bot runs: it stops after the step under way (a pause or an
analysis at once), fails without paging or rolling back by itself, and its incident offers
*Roll back* and *Retry step*; the runner on an injected clock, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.app.deploy_steps import abort_deploy
from bot.app.sessions import DeployService
from bot.domain import SessionState
from bot.domain.errors import DomainError, PermissionDenied
from bot.domain.step_progress import StepState
from bot.rendering.incident import incident_message
from bot.storage.models import OutboxRow
from bot.storage.outbox import Defer
from tests.test_deploy_steps import runner_for

ROLLBACK = {"rollback": [{"kind": "command", "argv": ["true"]}]}


def outbox_topics(factory: sessionmaker[Session], sid: int) -> list[str]:
    with factory() as db:
        rows = db.query(OutboxRow).filter(OutboxRow.session_id == sid).all()
        return [row.topic for row in rows]


def test_abort_while_a_command_runs_stops_before_the_next_step(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    steps = [
        {"kind": "command", "argv": ["./migrate"], "name": "migrate"},
        {"kind": "command", "argv": ["./smoke"], "name": "smoke"},
    ]
    runner, service, _, sid = runner_for(tmp_path, session_factory, steps, **ROLLBACK)
    ran: list[list[str]] = []

    def command(argv: list[str], env: Any, timeout: float, emit: Any) -> str:
        ran.append(argv)
        if argv == ["./migrate"]:  # someone clicks Abort while it runs
            assert abort_deploy(service, sid, "wrong version", "U0DEPLOYER", request=None)
        return "exit 0"

    runner.command = command
    runner.execute(sid)

    assert ran == [["./migrate"]]  # the step under way finished; the next never started
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert [s.state for s in session.steps] == [StepState.DONE, StepState.FAILED]
    assert session.steps[1].detail == "not started: <@U0DEPLOYER>: wrong version aborted the deploy"
    kinds = [e.kind for e in service.history(sid)]
    assert "rollback_started" not in kinds  # people choose: the incident offers it
    assert "pagerduty" not in outbox_topics(session_factory, sid)
    assert session.open_incident is not None


def test_abort_stops_a_waiting_pause_at_once_and_the_incident_offers_rollback(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    pause = {"kind": "pause", "continue_by": ["sre"], "timeout": "1h"}
    runner, service, _, sid = runner_for(tmp_path, session_factory, [pause], **ROLLBACK)
    with pytest.raises(Defer):
        runner.execute(sid)
    with pytest.raises(DomainError, match="a reason is required"):
        abort_deploy(service, sid, " ", "U0DEPLOYER", request=None)
    with pytest.raises(PermissionDenied):
        abort_deploy(service, sid, "no", "U0STRANGER", request=None)
    assert abort_deploy(service, sid, "bad metrics", "U0DEPLOYER", request=None)
    assert service.get(sid).state is SessionState.DEPLOYING  # until the runner looks
    runner.execute(sid)
    session = service.get(sid)
    assert session.state is SessionState.FAILED
    assert session.steps[0].detail == "stopped: <@U0DEPLOYER>: bad metrics aborted the deploy"
    blocks = incident_message(session, oncall=[], rollback=["command: true"])
    buttons = [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["Acknowledge", "Roll back", "Retry step 1"]
    # Now an abort aborts the failed session itself.
    assert not abort_deploy(service, sid, "giving up", "U0DEPLOYER", request=None)
    assert service.get(sid).state is SessionState.ABORTED


def test_start_deployment_asks_to_confirm_the_plan_within_slacks_limits(
    tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    from bot.config.loader import load_config
    from bot.rendering import summary_blocks, validate_message
    from tests.test_deploy_steps import write_config

    long_argv = ["./migrate", "--to", "{version}", *(["--verbose"] * 60)]
    steps = [{"kind": "command", "argv": long_argv}, {"kind": "pause", "duration": "5m"}]
    config = load_config(write_config(tmp_path, {"steps": steps}))
    service = DeployService(config=config, session_factory=session_factory)
    session = service.open(environment="prod", user_id="U0DEPLOYER", version="v2")
    blocks = summary_blocks(session, now=session.opened_at)
    validate_message(blocks)
    (start,) = [
        e
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "deploy.start_deployment"
    ]
    text = start["confirm"]["text"]["text"]
    assert len(text) <= 300
    assert text.startswith("deploybot runs 2 steps: 1. command: ./migrate --to {version} --verbose")
    assert text.endswith("… (all of it: deploybot deploy plan prod v2)")
    assert start["confirm"]["title"]["text"] == "Deploy prod v2?"
