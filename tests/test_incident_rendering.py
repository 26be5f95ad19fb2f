"""The incident message rendered from the session: one test per phase, and Slack's limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.domain import SYSTEM, Actor, DeploySession, SessionState, apply
from bot.domain import commands as c
from bot.rendering import validate_message
from bot.rendering.ids import ActionId
from bot.rendering.incident import (
    IncidentPhase,
    incident_message,
    incident_message_text,
    incident_phase,
)
from tests.test_domain import NOW, ONCALL, QA, make_session
from tests.test_rendering import action_ids, actions, texts

S = SessionState
ACK_AT, RESOLVED_AT = NOW + timedelta(minutes=3), NOW + timedelta(minutes=41)
TARGETS = ["kubernetes: rollout undo deployment/api -n prod", "command: ./restore-config.sh"]
LINK = "https://example.slack.com/archives/C0DEPLOYS/p1700000000000100"


def step(session: DeploySession, command: c.Command, actor: Actor = SYSTEM) -> DeploySession:
    return apply(session, command, actor, NOW + timedelta(minutes=1)).session


def failed() -> DeploySession:
    session = make_session(S.DEPLOYING)
    session = apply(session, c.RecordProbeResult("1.1", False, "HTTP 503"), SYSTEM, NOW).session
    return step(session, c.Fail("critical probe failed during verification: backups"))


def acknowledged() -> DeploySession:
    return apply(failed(), c.Acknowledge(), ONCALL, ACK_AT).session


def rolling_back() -> DeploySession:
    return step(acknowledged(), c.StartRollback(), ONCALL)


def rolled_back() -> DeploySession:
    return step(rolling_back(), c.RollbackSucceeded())


def rollback_failed() -> DeploySession:
    return step(rolling_back(), c.RollbackFailed("step 1 failed: deployment/api timed out"))


def resolved() -> DeploySession:
    return apply(acknowledged(), c.Resolve("flaky probe"), QA, RESOLVED_AT).session


def render(session: DeploySession) -> list[dict[str, Any]]:
    blocks = incident_message(
        session, oncall=["U0ONCALL", "S0SRE", "@dba-team"], rollback=TARGETS, session_link=LINK
    )
    validate_message(blocks, text=incident_message_text(session))
    return blocks


ACKNOWLEDGED_LINE = (
    "Acknowledged by <@U0ONCALL> <!date^1795435380^{date_short_pretty} {time}|2026-11-23 12:03 UTC>"
)
PHASES: list[tuple[Callable[[], DeploySession], IncidentPhase, str, list[str]]] = [
    (
        failed,
        IncidentPhase.FAILED,
        "*Status:* failed, not acknowledged yet",
        [ActionId.ACKNOWLEDGE, ActionId.ROLL_BACK, ActionId.RESOLVE],
    ),
    (
        acknowledged,
        IncidentPhase.ACKNOWLEDGED,
        f"*Status:* {ACKNOWLEDGED_LINE}",
        [ActionId.ROLL_BACK, ActionId.RESOLVE],
    ),
    (rolling_back, IncidentPhase.ROLLING_BACK, "*Status:* Rolling back…", []),
    (rolled_back, IncidentPhase.ROLLED_BACK, "*Status:* Rolled back", []),
    (
        rollback_failed,
        IncidentPhase.ROLLBACK_FAILED,
        "*Status:* Rollback failed: step 1 failed: deployment/api timed out",
        [ActionId.ROLL_BACK, ActionId.RESOLVE],
    ),
    (
        resolved,
        IncidentPhase.RESOLVED,
        "*Status:* Resolved by <@U0QA> "
        "<!date^1795437660^{date_short_pretty} {time}|2026-11-23 12:41 UTC>",
        [],
    ),
]


@pytest.mark.parametrize(
    ("build", "phase", "status", "buttons"), PHASES, ids=[p.value for _, p, _, _ in PHASES]
)
def test_each_phase_shows_its_status_and_only_its_buttons(
    build: Callable[[], DeploySession], phase: IncidentPhase, status: str, buttons: list[str]
) -> None:
    session = build()
    blocks = render(session)
    assert session.incident is not None
    assert incident_phase(session, session.incident) is phase
    shown = texts(blocks)
    assert status in shown
    assert action_ids(blocks) == buttons
    assert "*backups* (critical) failed: HTTP 503" in shown
    assert f"<{LINK}|deploy #7> requested by <@U0DEPLOYER>" in shown
    assert "On call: <@U0ONCALL> <!subteam^S0SRE> @dba-team" in shown
    assert "Since <!date^1795435200^{date_short_pretty} {time}|2026-11-23 12:00 UTC>" in shown
    assert blocks[0]["text"]["text"].endswith("prod api v1.4.2: backups failed")
    assert status.removeprefix("*Status:* ") in incident_message_text(session)


def test_the_acknowledgement_stays_on_the_message_after_it() -> None:
    for build in (rolling_back, rolled_back, rollback_failed, resolved):
        assert ACKNOWLEDGED_LINE in texts(render(build()))
    assert "Acknowledged" not in texts(render(failed()))


def test_roll_back_asks_to_confirm_what_it_runs_and_says_again_after_a_failure() -> None:
    first = next(e for e in actions(render(failed())) if e["action_id"] == ActionId.ROLL_BACK)
    assert first["text"]["text"] == "Roll back"
    assert first["style"] == "danger" and first["value"] == "7"
    assert first["confirm"]["text"]["text"] == "This runs:\n• " + "\n• ".join(TARGETS)
    again = next(
        e for e in actions(render(rollback_failed())) if e["action_id"] == ActionId.ROLL_BACK
    )
    assert again["text"]["text"] == "Roll back again"


def test_without_rollback_targets_the_confirmation_says_so() -> None:
    blocks = incident_message(failed(), oncall=[], rollback=[])
    roll_back = next(e for e in actions(blocks) if e["action_id"] == ActionId.ROLL_BACK)
    assert roll_back["confirm"]["text"]["text"] == "This runs:\nNo rollback targets are configured."
    assert "On call: _no on-call role configured_" in texts(blocks)
    assert "deploy #7 requested by" in texts(blocks)


def test_buttons_follow_the_transition_table_before_the_session_fails() -> None:
    """A critical failure opens the incident at once; the bot fails the session after."""
    opened = make_session(S.OPEN)
    opened = apply(opened, c.RecordProbeResult("1.1", False, "HTTP 503"), SYSTEM, NOW).session
    assert opened.incident is None  # before deploying a failure is no incident
    deploying = make_session(S.DEPLOYING)
    deploying = apply(deploying, c.RecordProbeResult("1.1", False, "x"), SYSTEM, NOW).session
    assert action_ids(render(deploying)) == [ActionId.ROLL_BACK]


def test_an_aborted_deploy_closes_the_incident_message() -> None:
    deployer = Actor("U0DEPLOYER", frozenset({"deployers"}))
    aborted = step(acknowledged(), c.Abort("giving up: fixing forward"), deployer)
    blocks = render(aborted)
    assert "*Status:* Deploy aborted: giving up: fixing forward" in texts(blocks)
    assert action_ids(blocks) == []


def test_a_session_without_an_incident_is_refused() -> None:
    with pytest.raises(ValueError, match="deploy #7 has no incident"):
        incident_message(make_session(S.FAILED), oncall=[], rollback=[])
    with pytest.raises(ValueError, match="no incident"):
        incident_message_text(make_session(S.FAILED))


def test_probe_text_cannot_mention_or_link() -> None:
    session = make_session(S.DEPLOYING)
    command = c.RecordProbeResult("1.1", False, "<!channel> & <https://evil|click>")
    session = step(apply(session, command, SYSTEM, NOW).session, c.Fail("x"))
    shown = texts(render(session)) + "\n" + incident_message_text(session)
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in shown
    assert "<!channel>" not in shown


def test_huge_texts_stay_within_slacks_limits() -> None:
    session = make_session(S.DEPLOYING)
    summary = "<&> " * 5_000
    session = apply(session, c.RecordProbeResult("1.1", False, summary), SYSTEM, NOW).session
    session = step(step(session, c.Fail("x")), c.StartRollback(), ONCALL)
    session = step(session, c.RollbackFailed("é" * 20_000))
    members = [f"U0{n:08d}" for n in range(500)]
    blocks = incident_message(
        session, oncall=members, rollback=[f"command: {'x' * 500}"] * 200, session_link=LINK
    )
    validate_message(blocks, text=incident_message_text(session))
    on_call = texts(blocks).split("On call: ")[1].split("\n")[0]
    assert on_call.endswith(" more") and "<@U0" in on_call
    assert all(m.startswith("<@U0") and m.endswith(">") for m in on_call.split(" and ")[0].split())
    assert len(json.dumps(blocks)) < 12_000
