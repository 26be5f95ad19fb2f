"""The policy table: every action against every party, through ``apply`` and the environment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain import (
    POLICY,
    SYSTEM,
    Action,
    Actor,
    DeploySession,
    EnvironmentPolicy,
    Parties,
    Party,
    SessionPolicy,
    SessionState,
    SignOffRule,
    apply,
    authorize,
)
from bot.domain import commands as c
from bot.domain.checklist import Checklist, ChecklistItem, Section
from bot.domain.emergency import Emergency
from bot.domain.errors import PermissionDenied
from bot.domain.freeze import FreezeWindow
from bot.domain.policy import DOING, is_allowed
from bot.domain.step_progress import StepProgress, StepState
from bot.domain.steps import ContinueStep, RetryStep
from bot.domain.transitions import ACTIONS, TRANSITIONS

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
S = SessionState

# One actor per party, each in that party only (a signer is an approver too: signing roles
# are approver roles). The sign-off in question is "qa-lead", signed by `qa`.
ACTORS: dict[str, Actor] = {
    "requester": Actor("U0REQ"),
    "operator": Actor("U0OP", frozenset({"release-managers"})),
    "approver": Actor("U0DBA", frozenset({"dba"})),
    "signer": Actor("U0QA", frozenset({"qa"})),
    "oncall": Actor("U0ONCALL", frozenset({"oncall"})),
    "starter": Actor("U0START", frozenset({"deployers"})),
    "outsider": Actor("U0OUT"),
    "captain": Actor("U0CAPT", frozenset({"captains"})),
    "commander": Actor("U0CMD", frozenset({"commanders"})),
    "system": SYSTEM,
}
FROZEN = FreezeWindow(NOW - timedelta(hours=1), NOW + timedelta(hours=1), "Weekend")

# The table, written out by hand: who may take each action.
WORKERS = {"requester", "operator", "approver", "signer", "oncall", "system"}
RUNNERS = {"requester", "operator", "system"}
RESPONDERS = {"approver", "signer", "oncall"}
EXPECTED: dict[Action, set[str]] = {
    Action.START_SESSION: {"starter"},
    Action.TICK: WORKERS,
    Action.UNTICK: WORKERS,
    Action.SKIP: WORKERS,
    Action.SIGN_OFF: {"signer"},
    Action.START_DEPLOYMENT: RUNNERS,
    Action.FINISH_DEPLOYMENT: RUNNERS,
    Action.RUN_PROBES: RUNNERS,
    Action.ABORT: RUNNERS,
    Action.COMPLETE: RUNNERS,
    Action.ACKNOWLEDGE: RESPONDERS,
    Action.ROLL_BACK: RESPONDERS | {"system"},
    Action.RESOLVE: RESPONDERS,
    Action.LOCK: {"starter", "operator"},
    Action.UNLOCK: {"starter", "operator"},
    Action.REPORT: set(ACTORS),
    Action.OVERRIDE_FREEZE: {"captain"},
    Action.DECLARE_EMERGENCY: {"commander"},
    Action.CHANGE_VERSION: {"requester", "operator"},
    Action.SIGN_RETROSPECTIVE: {"signer"},
    Action.CONTINUE_STEP: set(ACTORS),  # then the pause's own roles decide
    Action.RETRY_STEP: RESPONDERS | {"requester", "operator"},
    Action.RECORD: {"system"},
}

# What a refusal says, in full: who may.
WORKING = "only the requester <@U0REQ> or members of `release-managers`, `qa`, `dba`, `oncall` can."
RUNNING = "only the requester <@U0REQ> or members of `release-managers` can."
RESPONDING = "only members of `oncall`, `qa`, `dba` can."
REFUSALS: dict[Action, str] = {
    Action.START_SESSION: "You can't start a deploy of prod: only members of `deployers` can.",
    Action.TICK: f"You can't tick items: {WORKING}",
    Action.UNTICK: f"You can't untick items: {WORKING}",
    Action.SKIP: f"You can't skip items: {WORKING}",
    Action.SIGN_OFF: "You can't sign off as QA Lead: only members of `qa` can.",
    Action.START_DEPLOYMENT: f"You can't start the deployment: {RUNNING}",
    Action.FINISH_DEPLOYMENT: f"You can't finish the deployment: {RUNNING}",
    Action.RUN_PROBES: f"You can't run probes: {RUNNING}",
    Action.ABORT: f"You can't abort this deploy: {RUNNING}",
    Action.COMPLETE: f"You can't complete the deploy: {RUNNING}",
    Action.ACKNOWLEDGE: f"You can't acknowledge the incident: {RESPONDING}",
    Action.ROLL_BACK: f"You can't roll back: {RESPONDING}",
    Action.RESOLVE: f"You can't resolve the incident: {RESPONDING}",
    Action.LOCK: "You can't lock prod: only members of `deployers`, `release-managers` can.",
    Action.UNLOCK: "You can't unlock prod: only members of `deployers`, `release-managers` can.",
    Action.OVERRIDE_FREEZE: "You can't override the change freeze of prod: only members of "
    "`captains` can.",
    Action.DECLARE_EMERGENCY: "You can't deploy prod as an emergency: only members of "
    "`commanders` can.",
    Action.CHANGE_VERSION: f"You can't change the version of this deploy: {RUNNING}",
    Action.SIGN_RETROSPECTIVE: "You can't sign the retrospective as Retrospective: only "
    "members of `qa` can.",
    Action.RETRY_STEP: "You can't retry a deploy step: only the requester <@U0REQ> or members "
    "of `oncall`, `qa`, `dba`, `release-managers` can.",
    Action.RECORD: "Only deploybot itself records this.",
}

QA_LEAD = SignOffRule("qa-lead", "QA Lead", ("qa",))
DBA_LEAD = SignOffRule("dba-lead", "DBA Lead", ("dba",))
ENVIRONMENT = EnvironmentPolicy.build(
    "prod",
    starters=["deployers"],
    operators=["release-managers"],
    oncall=["oncall"],
    approvers=["qa", "dba"],
    freeze_override=["captains"],
    emergency=["commanders"],
)
RETROSPECTIVE = SignOffRule("retrospective", "Retrospective", ("qa",))

# A command and a state that allow each session action, so only the policy decides.
SESSION_COMMANDS: dict[Action, tuple[c.Command, SessionState]] = {
    Action.TICK: (c.TickItem("1.1"), S.OPEN),
    Action.UNTICK: (c.UntickItem("1.1"), S.OPEN),
    Action.SKIP: (c.SkipItem("1.1", "not needed"), S.OPEN),
    Action.SIGN_OFF: (c.SignOff("qa-lead"), S.OPEN),
    Action.START_DEPLOYMENT: (c.StartDeployment(), S.OPEN),
    Action.FINISH_DEPLOYMENT: (c.FinishDeployment(), S.DEPLOYING),
    Action.RUN_PROBES: (c.RequestProbes("a manual run"), S.OPEN),
    Action.ABORT: (c.Abort("wrong build"), S.OPEN),
    Action.COMPLETE: (c.Complete(), S.MONITORING),
    Action.ACKNOWLEDGE: (c.Acknowledge(), S.FAILED),
    Action.ROLL_BACK: (c.StartRollback(), S.FAILED),
    Action.RESOLVE: (c.Resolve("flaky"), S.FAILED),
    Action.OVERRIDE_FREEZE: (c.OverrideFreeze("hotfix", frozen=FROZEN), S.OPEN),
    Action.CONTINUE_STEP: (ContinueStep(1, by=()), S.DEPLOYING),
    Action.RETRY_STEP: (RetryStep(1), S.FAILED),
    Action.RECORD: (c.Fail("probe api failed"), S.DEPLOYING),
    Action.CHANGE_VERSION: (c.ChangeVersion("v2"), S.OPEN),
    Action.SIGN_RETROSPECTIVE: (c.SignRetrospective("went fine"), S.COMPLETED),
}
# The step each step command finds (a pause waiting for anyone; a failed step).
STEPS = {
    ContinueStep: StepProgress("pause", "pause", StepState.WAITING),
    RetryStep: StepProgress("kubectl", "kubernetes", StepState.FAILED),
}
ENVIRONMENT_ACTIONS = (
    Action.START_SESSION,
    Action.LOCK,
    Action.UNLOCK,
    Action.REPORT,
    Action.DECLARE_EMERGENCY,
)


def make_session(state: SessionState = S.OPEN, **policy: Any) -> DeploySession:
    checklist = Checklist(
        sections=(Section(title="Pre-Deployment", items=(ChecklistItem(text="Backups"),)),)
    ).numbered()
    rules: dict[str, Any] = {
        "signoffs": (QA_LEAD, DBA_LEAD),
        "operators": ("release-managers",),
        "oncall": ("oncall",),
        "freeze_override": ("captains",),
    }
    rules.update(policy)
    session = DeploySession(
        environment="prod",
        requester="U0REQ",
        checklist=checklist,
        policy=SessionPolicy(**rules),
        opened_at=NOW,
        id=7,
        emergency=Emergency("U0REQ", NOW, "site down", RETROSPECTIVE),
    )
    session.state = state
    return session


PAIRS = [(action, name) for action in Action for name in ACTORS]


def test_the_table_covers_every_action_and_command() -> None:
    assert set(POLICY) == set(Action) == set(DOING) == set(EXPECTED)
    assert set(SESSION_COMMANDS) | set(ENVIRONMENT_ACTIONS) == set(Action)
    assert {command for _, command in TRANSITIONS} == set(ACTIONS)
    for action, (command, state) in SESSION_COMMANDS.items():
        assert ACTIONS[type(command)] is action
        assert (state, type(command)) in TRANSITIONS


@pytest.mark.parametrize(("action", "who"), PAIRS, ids=[f"{a}-{w}" for a, w in PAIRS])
def test_every_action_and_party(action: Action, who: str) -> None:
    actor, allowed = ACTORS[who], who in EXPECTED[action]
    if action in ENVIRONMENT_ACTIONS:

        def attempt() -> None:
            ENVIRONMENT.authorize(action, actor, requester="U0REQ")

    else:
        command, state = SESSION_COMMANDS[action]

        def attempt() -> None:
            session = make_session(state)
            if type(command) in STEPS:
                session.steps = (STEPS[type(command)],)
            apply(session, command, actor, NOW)

    if allowed:
        attempt()
        return
    with pytest.raises(PermissionDenied) as refused:
        attempt()
    assert str(refused.value) == REFUSALS[action]


@pytest.mark.parametrize(("action", "who"), PAIRS, ids=[f"{a}-{w}" for a, w in PAIRS])
def test_is_allowed_agrees_with_authorize(action: Action, who: str) -> None:
    parties = ENVIRONMENT.parties(requester="U0REQ")
    if action is Action.SIGN_OFF:
        parties = make_session().policy.parties("U0REQ", signer=QA_LEAD, environment="prod")
    if action is Action.SIGN_RETROSPECTIVE:
        policy = make_session().policy
        parties = policy.parties("U0REQ", signer=RETROSPECTIVE, environment="prod")
    allowed = ENVIRONMENT.allowed(action)
    assert is_allowed(action, ACTORS[who], parties, allowed=allowed) is (who in EXPECTED[action])


def test_requester_may_not_sign_their_own_deploy() -> None:
    requester = Actor("U0REQ", frozenset({"qa"}))
    with pytest.raises(PermissionDenied) as refused:
        apply(make_session(), c.SignOff("qa-lead"), requester, NOW)
    assert str(refused.value) == (
        "You can't sign off as QA Lead on your own deploy (separation of duties): "
        "ask another member of the role."
    )
    allowed = apply(make_session(separation_of_duties=False), c.SignOff("qa-lead"), requester, NOW)
    assert allowed.session.signoffs["qa-lead"].by == "U0REQ"


def test_the_requester_is_a_responder_only_through_a_role() -> None:
    """Separation of duties is about signing; a requester on call may still respond."""
    requester = Actor("U0REQ", frozenset({"oncall"}))
    assert apply(make_session(S.FAILED), c.Acknowledge(), requester, NOW).changed


def test_unconfigured_parties_say_so() -> None:
    bare = make_session(S.FAILED, signoffs=(), oncall=())
    with pytest.raises(PermissionDenied) as refused:
        apply(bare, c.Acknowledge(), ACTORS["outsider"], NOW)
    assert str(refused.value) == (
        "You can't acknowledge the incident: no role is configured for it here."
    )
    with pytest.raises(PermissionDenied, match=r"only the requester <@U0REQ> can\.$"):
        apply(make_session(operators=()), c.RequestProbes("x"), ACTORS["operator"], NOW)


def test_reports_can_be_narrowed_per_environment() -> None:
    narrowed = EnvironmentPolicy.build(
        "prod",
        starters=["deployers"],
        operators=["release-managers"],
        report=["requester", "operators"],
    )
    assert narrowed.report == (Party.REQUESTER, Party.OPERATORS)
    narrowed.authorize(Action.REPORT, ACTORS["requester"], requester="U0REQ")
    narrowed.authorize(Action.REPORT, ACTORS["operator"])
    with pytest.raises(PermissionDenied) as refused:
        narrowed.authorize(Action.REPORT, ACTORS["outsider"], requester="U0REQ")
    assert str(refused.value) == (
        "You can't see the report of a prod deploy: "
        "only the requester <@U0REQ> or members of `release-managers` can."
    )
    # The default is the table's row: anyone.
    assert ENVIRONMENT.report == POLICY[Action.REPORT] == (Party.ANYONE,)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["everyone"], "unknown report parties everyone"),
        (["signer"], "unknown report parties signer"),
    ],
)
def test_report_parties_must_be_known(names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnvironmentPolicy.build("prod", starters=["deployers"], report=names)


def test_environment_policy_builds_from_plain_names() -> None:
    built = EnvironmentPolicy.build(
        "staging",
        starters=("deployers",),
        operators=["release-managers"],
        approvers=["qa", "dba", "qa"],
    )
    assert built == EnvironmentPolicy(
        environment="staging",
        starters=("deployers",),
        operators=("release-managers",),
        approvers=("qa", "dba"),
    )


def test_authorize_takes_an_override_of_the_row() -> None:
    parties = Parties(requester="U0REQ", operators=("release-managers",))
    authorize(Action.RUN_PROBES, ACTORS["operator"], parties)
    with pytest.raises(PermissionDenied, match="only the requester <@U0REQ> can"):
        authorize(Action.RUN_PROBES, ACTORS["operator"], parties, allowed=(Party.REQUESTER,))
