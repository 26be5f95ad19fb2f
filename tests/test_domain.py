"""The deploy session state machine: every state against every command, and the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.domain import (
    SYSTEM,
    TRANSITIONS,
    Actor,
    DeploySession,
    ItemProgress,
    ItemStatus,
    SessionPolicy,
    SessionState,
    SignOffRule,
    apply,
    steps,
)
from bot.domain import commands as c
from bot.domain.checklist import Checklist, ChecklistItem, Gate, Section, Severity
from bot.domain.emergency import Emergency
from bot.domain.errors import DomainError, GateClosed, PermissionDenied
from bot.domain.freeze import FreezeWindow
from bot.domain.session import progress_from_json
from bot.domain.step_progress import StepProgress, StepState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REQUESTER = Actor("U0DEPLOYER", frozenset({"deployers"}))
OPERATOR = Actor("U0OPERATOR", frozenset({"deployers"}))
QA = Actor("U0QA", frozenset({"approvers"}))
QA2 = Actor("U0QA2", frozenset({"approvers"}))
ONCALL = Actor("U0ONCALL", frozenset({"oncall"}))
OUTSIDER = Actor("U0OUTSIDER")
CAPTAIN = Actor("U0CAPTAIN", frozenset({"captains"}))
FROZEN = FreezeWindow(NOW - timedelta(hours=1), NOW + timedelta(hours=65), "Weekend")


def make_session(state: SessionState = SessionState.OPEN, **policy: Any) -> DeploySession:
    checklist = Checklist(
        title="Release",
        sections=(
            Section(
                title="Pre-Deployment",
                items=(
                    ChecklistItem(text="Backups verified", probe="backups"),
                    ChecklistItem(
                        text="Database", children=(ChecklistItem(text="Replicas in sync"),)
                    ),
                ),
            ),
            Section(
                title="Post-Deployment",
                gate=Gate(after=("pre-deployment",), signoffs=("qa-lead",)),
                items=(ChecklistItem(text="Smoke test"),),
            ),
        ),
    ).numbered()
    defaults: dict[str, Any] = {
        "signoffs": (
            SignOffRule("qa-lead", "QA Lead", ("approvers",)),
            SignOffRule("devops-lead", "DevOps Lead", ("approvers",)),
        ),
        "operators": ("deployers",),
        "oncall": ("oncall",),
        "freeze_override": ("captains",),
        "deploy_gate": Gate(signoffs=("qa-lead",)),
        "complete_gate": Gate(signoffs=("qa-lead", "devops-lead")),
    }
    defaults.update(policy)
    session = DeploySession(
        environment="prod",
        requester=REQUESTER.user_id,
        checklist=checklist,
        policy=SessionPolicy(**defaults),
        opened_at=NOW,
        service="api",
        version="v1.4.2",
        id=7,
    )
    session.state = state
    return session


def signed(session: DeploySession) -> DeploySession:
    for actor, key in ((QA, "qa-lead"), (QA2, "devops-lead")):
        session = apply(session, c.SignOff(key), actor, NOW).session
    return session


# One command of each kind, with the actor that is allowed to send it.
COMMANDS: list[tuple[c.Command, Actor]] = [
    (c.TickItem("1.1"), REQUESTER),
    (c.UntickItem("1.1"), REQUESTER),
    (c.SkipItem("1.1", "not needed"), REQUESTER),
    (c.UnskipItem("1.1", "needed after all"), REQUESTER),
    (c.RequestProbes("a manual run"), REQUESTER),
    (c.StartProbe("1.1"), SYSTEM),
    (c.InterruptProbe("1.1", "the bot stopped"), SYSTEM),
    (c.RecordProbeResult("1.1", ok=True, summary="HTTP 200"), SYSTEM),
    (c.SignOff("qa-lead"), QA),
    (c.StartDeployment(), OPERATOR),
    (c.OverrideFreeze("hotfix for INC-12", frozen=FROZEN), CAPTAIN),
    (c.FinishDeployment(), OPERATOR),
    (c.StartMonitoring(), SYSTEM),
    (c.Complete(), OPERATOR),
    (c.Fail("probe api-health failed"), SYSTEM),
    (c.Abort("wrong version"), OPERATOR),
    (c.Expire("open for 24h"), SYSTEM),
    (c.Acknowledge(), ONCALL),
    (c.Resolve("flaky probe"), ONCALL),
    (c.StartRollback(), ONCALL),
    (c.RollbackSucceeded(), SYSTEM),
    (c.RollbackFailed("deployment/auth: timed out"), SYSTEM),
    (c.ChangeVersion("v2"), REQUESTER),
    (c.SignRetrospective("went fine"), Actor("U0LEAD", frozenset({"leads"}))),
    (steps.StartStep(1), SYSTEM),
    (steps.StepApplied(1, "image updated"), SYSTEM),
    (steps.StepDone(1, "rolled out"), SYSTEM),
    (steps.StepFailed(1, "exit 1"), SYSTEM),
    (steps.ContinueStep(1, ("oncall",)), ONCALL),
    (steps.RetryStep(1), ONCALL),
]
# The one step each step command finds, so that only the session's state decides.
STEP_BEFORE: dict[type[Any], StepState] = {
    steps.StartStep: StepState.PENDING,
    steps.StepApplied: StepState.RUNNING,
    steps.StepDone: StepState.RUNNING,
    steps.StepFailed: StepState.RUNNING,
    steps.ContinueStep: StepState.WAITING,
    steps.RetryStep: StepState.FAILED,
}
RETROSPECTIVE = SignOffRule("retrospective", "Retrospective", ("leads",))


def _ready_for(command: c.Command, session: DeploySession) -> DeploySession:
    """Satisfy gates so that only the state decides whether the command is allowed."""
    if isinstance(command, (c.StartDeployment, c.Complete)) and session.state in (
        SessionState.OPEN,
        SessionState.DEPLOYING,
        SessionState.VERIFYING,
        SessionState.MONITORING,
    ):
        return signed(session)
    if isinstance(command, c.SignRetrospective):
        session.emergency = Emergency("U0DEPLOYER", NOW, "site down", RETROSPECTIVE)
    if type(command) in STEP_BEFORE:
        session.steps = (StepProgress("step", "pause", STEP_BEFORE[type(command)]),)
    if isinstance(command, c.UnskipItem):
        session.items["1.1"] = ItemProgress(ItemStatus.SKIPPED, "U0DEPLOYER", NOW, "not needed")
    return session


@pytest.mark.parametrize("state", list(SessionState))
@pytest.mark.parametrize(
    ("command", "actor"), COMMANDS, ids=[type(cmd).__name__ for cmd, _ in COMMANDS]
)
def test_every_state_and_command(state: SessionState, command: c.Command, actor: Actor) -> None:
    session = _ready_for(command, make_session(state))
    target = TRANSITIONS.get((state, type(command)))
    if target is None:
        with pytest.raises(DomainError, match=f"that is {state.label}"):
            apply(session, command, actor, NOW)
        return
    outcome = apply(session, command, actor, NOW)
    assert outcome.session.state is target
    assert session.state is state, "apply must not mutate its input"
    if target is not state:
        assert outcome.events[-1].kind == "state_changed"
        assert outcome.events[-1].data == {"from": state, "to": target}
        assert (outcome.session.closed_at == NOW) is target.is_closed


def test_table_names_every_command() -> None:
    named = {command for _, command in TRANSITIONS}
    assert named == {type(cmd) for cmd, _ in COMMANDS}


def test_an_interrupted_probe_goes_back_to_pending_saying_why() -> None:
    s = apply(make_session(), c.StartProbe("1.1"), SYSTEM, NOW).session
    outcome = apply(s, c.InterruptProbe("1.1", "the bot stopped"), SYSTEM, NOW)
    progress = outcome.session.progress("1.1")
    assert (progress.status, progress.reason) == (ItemStatus.PENDING, "the bot stopped")
    assert [e.kind for e in outcome.events] == ["probe_interrupted"]
    # Not running (any more): nothing to interrupt, nothing audited.
    assert apply(outcome.session, c.InterruptProbe("1.1", "again"), SYSTEM, NOW).events == ()
    with pytest.raises(PermissionDenied):
        apply(s, c.InterruptProbe("1.1", "by hand"), REQUESTER, NOW)


def test_happy_path_to_completed() -> None:
    s = make_session()
    s = apply(s, c.TickItem("1.1"), REQUESTER, NOW).session
    s = apply(s, c.TickItem("1.2"), OPERATOR, NOW + timedelta(minutes=1)).session
    s = apply(s, c.SkipItem("1.2.1", "single-node database"), OPERATOR, NOW).session
    s = signed(s)
    s = apply(s, c.TickItem("2.1"), QA, NOW).session
    s = apply(s, c.StartDeployment(), REQUESTER, NOW).session
    s = apply(s, c.FinishDeployment(), REQUESTER, NOW).session
    s = apply(s, c.StartMonitoring(), SYSTEM, NOW).session
    out = apply(s, c.Complete(), REQUESTER, NOW + timedelta(hours=1))
    assert out.session.state is SessionState.COMPLETED
    assert out.session.closed_at == NOW + timedelta(hours=1)
    assert out.session.progress("1.2").by == OPERATOR.user_id
    assert out.session.progress("1.2.1").reason == "single-node database"
    assert out.session.totals == (4, 4)


def test_tick_records_who_and_when_and_is_idempotent() -> None:
    out = apply(make_session(), c.TickItem("1.1"), OPERATOR, NOW)
    assert [e.kind for e in out.events] == ["item_ticked"]
    progress = out.session.progress("1.1")
    assert (progress.status, progress.by, progress.at) == (ItemStatus.DONE, "U0OPERATOR", NOW)
    again = apply(out.session, c.TickItem("1.1"), QA, NOW + timedelta(seconds=1))
    assert again.events == ()
    assert again.session.progress("1.1").by == "U0OPERATOR"


def test_untick_returns_item_to_pending() -> None:
    s = apply(make_session(), c.TickItem("1.1"), OPERATOR, NOW).session
    out = apply(s, c.UntickItem("1.1"), REQUESTER, NOW)
    assert out.session.progress("1.1").status is ItemStatus.PENDING
    assert [e.kind for e in out.events] == ["item_unticked"]


def test_unknown_item_is_refused() -> None:
    with pytest.raises(DomainError, match=r"no item 9\.9"):
        apply(make_session(), c.TickItem("9.9"), REQUESTER, NOW)


def test_a_skipped_item_is_not_ticked_or_unticked_but_unskipped_with_a_reason() -> None:
    s = apply(make_session(), c.SkipItem("1.2", "single-node database"), OPERATOR, NOW).session
    for command in (c.TickItem("1.2"), c.UntickItem("1.2")):
        with pytest.raises(DomainError, match=r"1\.2 is skipped .*single-node database.*unskip"):
            apply(s, command, REQUESTER, NOW)
    with pytest.raises(DomainError, match="reason is required"):
        apply(s, c.UnskipItem("1.2", " "), REQUESTER, NOW)
    with pytest.raises(PermissionDenied, match="skip items"):
        apply(s, c.UnskipItem("1.2", "we have replicas now"), OUTSIDER, NOW)
    out = apply(s, c.UnskipItem("1.2", "we have replicas now"), REQUESTER, NOW)
    assert out.session.progress("1.2").status is ItemStatus.PENDING
    assert [(e.kind, e.actor, e.data) for e in out.events] == [
        (
            "item_unskipped",
            "U0DEPLOYER",
            {"item": "1.2", "reason": "we have replicas now", "was": "single-node database"},
        )
    ]
    ticked = apply(out.session, c.TickItem("1.2"), REQUESTER, NOW).session
    assert ticked.progress("1.2").status is ItemStatus.DONE
    with pytest.raises(DomainError, match="not skipped"):
        apply(ticked, c.UnskipItem("1.2", "again"), REQUESTER, NOW)


def test_unskipping_an_overridden_failed_check_brings_the_failure_back() -> None:
    s = apply(make_session(), c.StartProbe("1.1"), SYSTEM, NOW).session
    failed = c.RecordProbeResult("1.1", False, "HTTP 503", Severity.CRITICAL)
    s = apply(s, failed, SYSTEM, NOW).session
    s = apply(s, c.SkipItem("1.1", "known flaky"), OPERATOR, NOW).session
    back = apply(s, c.UnskipItem("1.1", "not flaky after all"), OPERATOR, NOW).session
    progress = back.progress("1.1")
    assert (progress.status, progress.reason, progress.severity) == (
        ItemStatus.FAILED,
        "HTTP 503",
        Severity.CRITICAL,
    )
    assert [i.id for i, _ in back.failing_items()] == ["1.1"]


def test_skip_needs_a_reason() -> None:
    with pytest.raises(DomainError, match="reason is required"):
        apply(make_session(), c.SkipItem("1.1", "   "), REQUESTER, NOW)


def test_outsider_cannot_work_the_checklist() -> None:
    with pytest.raises(PermissionDenied) as refused:
        apply(make_session(), c.TickItem("1.1"), OUTSIDER, NOW)
    assert str(refused.value) == (
        "You can't tick items: only the requester <@U0DEPLOYER> or members of "
        "`deployers`, `approvers`, `oncall` can."
    )


def test_gated_section_stays_closed_until_prerequisites_and_signoffs() -> None:
    s = make_session()
    with pytest.raises(GateClosed) as refused:
        apply(s, c.TickItem("2.1"), REQUESTER, NOW)
    assert "*Pre-Deployment* is not finished" in str(refused.value)
    assert "sign-off from *QA Lead*" in str(refused.value)
    for item in ("1.1", "1.2", "1.2.1"):
        s = apply(s, c.TickItem(item), REQUESTER, NOW).session
    with pytest.raises(GateClosed, match="QA Lead") as refused:
        apply(s, c.TickItem("2.1"), REQUESTER, NOW)
    assert "Pre-Deployment" not in str(refused.value)
    s = apply(s, c.SignOff("qa-lead"), QA, NOW).session
    assert apply(s, c.TickItem("2.1"), REQUESTER, NOW).session.progress("2.1").status is (
        ItemStatus.DONE
    )


def test_signoff_by_a_member_is_recorded() -> None:
    out = apply(make_session(), c.SignOff("qa-lead"), QA, NOW)
    record = out.session.signoffs["qa-lead"]
    assert (record.role, record.by, record.at) == ("QA Lead", "U0QA", NOW)
    assert out.events[0].kind == "signed_off"


def test_signoff_by_a_non_member_is_refused() -> None:
    with pytest.raises(PermissionDenied, match="only members of `approvers`"):
        apply(make_session(), c.SignOff("qa-lead"), OUTSIDER, NOW)


def test_requester_cannot_sign_own_deploy() -> None:
    requester_approver = Actor(REQUESTER.user_id, frozenset({"deployers", "approvers"}))
    with pytest.raises(PermissionDenied, match="separation of duties"):
        apply(make_session(), c.SignOff("qa-lead"), requester_approver, NOW)


def test_requester_may_sign_when_separation_is_off() -> None:
    requester_approver = Actor(REQUESTER.user_id, frozenset({"deployers", "approvers"}))
    s = make_session(separation_of_duties=False)
    out = apply(s, c.SignOff("qa-lead"), requester_approver, NOW)
    assert out.session.signoffs["qa-lead"].by == REQUESTER.user_id


def test_same_role_cannot_be_signed_twice() -> None:
    s = apply(make_session(), c.SignOff("qa-lead"), QA, NOW).session
    with pytest.raises(DomainError, match="already signed off by <@U0QA>"):
        apply(s, c.SignOff("qa-lead"), QA2, NOW)


def test_unknown_signoff_is_refused() -> None:
    with pytest.raises(DomainError, match="required: QA Lead, DevOps Lead"):
        apply(make_session(), c.SignOff("cto"), QA, NOW)


def test_deploy_gate_says_what_is_missing() -> None:
    with pytest.raises(GateClosed, match=r"Still missing: sign-off from \*QA Lead\*"):
        apply(make_session(), c.StartDeployment(), REQUESTER, NOW)


def test_complete_refused_with_failed_items() -> None:
    s = signed(make_session(SessionState.VERIFYING))
    s = apply(s, c.RecordProbeResult("1.1", ok=False, summary="HTTP 503"), SYSTEM, NOW).session
    with pytest.raises(GateClosed, match=r"failed item \*Backups verified\*"):
        apply(s, c.Complete(), REQUESTER, NOW)


def test_complete_takes_the_verify_phase_and_its_answers() -> None:
    s = signed(make_session(SessionState.DEPLOYING))
    with pytest.raises(DomainError, match="You can't complete a session that is deploying"):
        apply(s, c.Complete(), REQUESTER, NOW)
    s = apply(s, c.FinishDeployment(), REQUESTER, NOW).session
    running = apply(s, c.StartProbe("1.1"), SYSTEM, NOW).session
    with pytest.raises(GateClosed, match=r"Verification is still running \(1.1\)"):
        apply(running, c.Complete(), REQUESTER, NOW)
    assert apply(s, c.Complete(), REQUESTER, NOW).session.state is SessionState.COMPLETED


def test_only_operators_start_abort_and_complete() -> None:
    s = signed(make_session())
    for command in (c.StartDeployment(), c.Abort("no")):
        with pytest.raises(PermissionDenied, match="only the requester <@U0DEPLOYER>"):
            apply(s, command, QA, NOW)


def test_abort_needs_a_reason_and_records_it() -> None:
    with pytest.raises(DomainError, match="reason is required"):
        apply(make_session(), c.Abort(""), REQUESTER, NOW)
    out = apply(make_session(), c.Abort("wrong build"), REQUESTER, NOW)
    assert out.session.outcome_reason == "wrong build"
    assert out.session.state.is_closed


def test_system_only_commands_refuse_people() -> None:
    for command in (c.Fail("x"), c.Expire("x"), c.StartMonitoring(), c.RollbackSucceeded()):
        state = {
            c.StartMonitoring: SessionState.VERIFYING,
            c.RollbackSucceeded: SessionState.ROLLING_BACK,
        }.get(type(command), SessionState.DEPLOYING)
        with pytest.raises(PermissionDenied, match="Only deploybot"):
            apply(make_session(state), command, REQUESTER, NOW)


def test_rollback_only_by_oncall_or_approvers() -> None:
    s = make_session(SessionState.FAILED)
    with pytest.raises(PermissionDenied, match="`oncall`, `approvers`"):
        apply(s, c.StartRollback(), OUTSIDER, NOW)
    assert apply(s, c.StartRollback(), QA, NOW).session.state is SessionState.ROLLING_BACK


def test_failed_probe_records_severity_and_summary() -> None:
    out = apply(
        make_session(),
        c.RecordProbeResult("1.1", ok=False, summary="HTTP 503", severity=c.Severity.WARNING),
        SYSTEM,
        NOW,
    )
    progress = out.session.progress("1.1")
    assert (progress.status, progress.reason, progress.severity) == (
        ItemStatus.FAILED,
        "HTTP 503",
        c.Severity.WARNING,
    )
    assert out.events[0].data == {
        "item": "1.1",
        "summary": "HTTP 503",
        "severity": "warning",
        "alert": False,
    }
    assert [item.text for item, _ in out.session.failing_items()] == ["Backups verified"]


def test_state_round_trips_through_json() -> None:
    from bot.domain.session import policy_from_json, progress_from_json, signoffs_from_json

    s = signed(apply(make_session(), c.SkipItem("1.1", "n/a"), REQUESTER, NOW).session)
    data = s.state_to_json()
    assert progress_from_json(data["items"]) == s.items
    assert signoffs_from_json(data["signoffs"]) == s.signoffs
    assert policy_from_json(s.policy_to_json()) == s.policy


def test_acknowledge_and_resolve_only_by_responders() -> None:
    s = make_session(SessionState.FAILED)
    for command in (c.Acknowledge(), c.Resolve("x")):
        with pytest.raises(PermissionDenied, match="`oncall`, `approvers`"):
            apply(s, command, REQUESTER, NOW)
    acked = apply(s, c.Acknowledge(), ONCALL, NOW)
    assert acked.session.state is SessionState.FAILED
    assert [e.kind for e in acked.events] == ["incident_acknowledged"]
    resolved = apply(acked.session, c.Resolve("flaky probe"), QA, NOW)
    assert resolved.session.state is SessionState.VERIFYING
    assert resolved.events[0].data == {"note": "flaky probe"}


def test_requesting_probes_changes_no_state_and_says_why() -> None:
    for actor in (REQUESTER, OPERATOR, SYSTEM):
        out = apply(
            make_session(SessionState.VERIFYING), c.RequestProbes("a manual run"), actor, NOW
        )
        assert out.session.state is SessionState.VERIFYING
        assert out.session.items == {}
        assert [(e.kind, e.actor, e.data) for e in out.events] == [
            ("probes_requested", actor.user_id, {"why": "a manual run"})
        ]


def test_probes_cannot_be_requested_by_outsiders_or_during_a_rollback() -> None:
    with pytest.raises(PermissionDenied, match="You can't run probes: only the requester"):
        apply(make_session(), c.RequestProbes("x"), QA, NOW)
    with pytest.raises(DomainError, match="run probes on a session that is rolling back"):
        apply(make_session(SessionState.ROLLING_BACK), c.RequestProbes("x"), REQUESTER, NOW)


def test_policy_json_without_newer_keys_still_loads() -> None:
    from bot.domain.session import policy_from_json

    old = {"signoffs": [], "operators": ["deployers"], "oncall": []}
    assert policy_from_json(old) == SessionPolicy(operators=("deployers",))


def test_a_locked_environment_stops_the_deployment_not_the_checklist() -> None:
    s = signed(make_session())
    s = apply(s, c.TickItem("1.1"), REQUESTER, NOW).session  # ticks go on while locked
    locked = "prod is locked by <@U0LEAD> since 2026-11-26 09:00 UTC: release freeze."
    with pytest.raises(DomainError, match="Deployment can't start: prod is locked by"):
        apply(s, c.StartDeployment(locked=locked), REQUESTER, NOW)
    assert s.state is SessionState.OPEN
    started = apply(s, c.StartDeployment(), REQUESTER, NOW).session
    assert started.state is SessionState.DEPLOYING


def test_a_failed_critical_probe_item_is_not_ticked_away() -> None:
    s = make_session()
    s = apply(s, c.StartProbe("1.1"), SYSTEM, NOW).session
    failed = c.RecordProbeResult("1.1", False, "HTTP 503", Severity.CRITICAL)
    s = apply(s, failed, SYSTEM, NOW).session
    with pytest.raises(DomainError, match=r"failed its probe \(HTTP 503\)"):
        apply(s, c.TickItem("1.1"), REQUESTER, NOW)
    # Overriding it is an operator's call, with a reason, and audited.
    with pytest.raises(PermissionDenied, match="skip items"):
        apply(s, c.SkipItem("1.1", "known flaky"), QA, NOW)
    skipped = apply(s, c.SkipItem("1.1", "known flaky"), OPERATOR, NOW)
    assert skipped.session.progress("1.1").status is ItemStatus.SKIPPED
    assert [(e.kind, e.data) for e in skipped.events] == [
        ("item_skipped", {"item": "1.1", "reason": "known flaky", "overrode": "HTTP 503"})
    ]
    # The override stays on the record (the summary and the report show it), stored or not.
    assert [i.id for i, _ in skipped.session.overridden_items()] == ["1.1"]
    stored = progress_from_json(skipped.session.state_to_json()["items"])
    assert stored["1.1"].overrode == "HTTP 503"
    # An ordinary skip overrides nothing.
    plain = apply(make_session(), c.SkipItem("1.1", "not needed"), OPERATOR, NOW)
    assert plain.session.overridden_items() == []
    assert "overrode" not in plain.events[0].data
    # A later passing run ticks it as usual.
    passed = c.RecordProbeResult("1.1", True, "HTTP 200")
    assert apply(s, passed, SYSTEM, NOW).session.progress("1.1").status is ItemStatus.DONE


def test_a_failed_warning_item_may_still_be_ticked_by_hand() -> None:
    s = make_session()
    warned = c.RecordProbeResult("1.1", False, "slow", Severity.WARNING)
    s = apply(s, warned, SYSTEM, NOW).session
    assert apply(s, c.TickItem("1.1"), REQUESTER, NOW).session.progress("1.1").status is (
        ItemStatus.DONE
    )
