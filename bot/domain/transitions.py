"""The deploy session state machine: a table of allowed transitions and one ``apply``.

``apply`` is pure: it takes a session, a command, the actor and the time, and returns a new
session and the events that happened. A command the table does not allow from the current
state raises :class:`DomainError` with a message fit for the person who asked; one the
policy table (:data:`bot.domain.policy.POLICY`) does not allow the actor raises
:class:`PermissionDenied`, naming who may.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot.domain import change_control, items, steps
from bot.domain import commands as c
from bot.domain.errors import DomainError, GateClosed
from bot.domain.events import Event
from bot.domain.freeze import FreezeOverride, FreezeWindow, frozen_message, override, override_hint
from bot.domain.policy import SYSTEM, Action, Actor, Parties, SignOffRule, authorize
from bot.domain.session import (
    DeploySession,
    ItemStatus,
    SessionState,
    SignOffRecord,
)
from bot.domain.step_progress import StepState

__all__ = ["ACTIONS", "HANDLERS", "SYSTEM", "TRANSITIONS", "VERBS", "Outcome", "apply"]

S = SessionState

ACTIVE = (S.OPEN, S.DEPLOYING, S.VERIFYING, S.MONITORING)
VERIFIED = (S.VERIFYING, S.MONITORING)
DEPLOYED = (S.DEPLOYING, S.VERIFYING, S.MONITORING)
NEEDS_ATTENTION = (S.FAILED, S.ROLLBACK_FAILED)
RUNNING = ItemStatus.RUNNING  # a probe still out: completing waits for its answer


def _rows(
    froms: tuple[SessionState, ...], command: type[Any], to: SessionState | None = None
) -> dict[tuple[SessionState, type[Any]], SessionState]:
    """``to=None`` means the command changes items or sign-offs but not the state."""
    return {(state, command): to or state for state in froms}


TRANSITIONS: dict[tuple[SessionState, type[Any]], SessionState] = {
    **_rows(ACTIVE + (S.FAILED,), c.TickItem),
    **_rows(ACTIVE + (S.FAILED,), c.UntickItem),
    **_rows(ACTIVE + (S.FAILED,), c.SkipItem),
    **_rows(ACTIVE + (S.FAILED,), c.UnskipItem),
    # People may not ask during a rollback: the bot re-runs the probes itself when it is done.
    **_rows(ACTIVE + NEEDS_ATTENTION, c.RequestProbes),
    **_rows(ACTIVE + NEEDS_ATTENTION + (S.ROLLING_BACK,), c.StartProbe),
    **_rows(ACTIVE + NEEDS_ATTENTION + (S.ROLLING_BACK,), c.RecordProbeResult),
    # In any state: a probe cut short stays "running" nowhere, even in a closed session.
    **_rows(tuple(S), c.InterruptProbe),
    **_rows(ACTIVE, c.SignOff),
    **_rows((S.OPEN,), c.StartDeployment, S.DEPLOYING),
    **_rows((S.OPEN,), c.OverrideFreeze),
    **_rows((S.DEPLOYING,), c.FinishDeployment, S.VERIFYING),
    **_rows((S.VERIFYING,), c.StartMonitoring, S.MONITORING),
    # Completing takes the verify phase: the probes have judged what was deployed.
    **_rows(VERIFIED, c.Complete, S.COMPLETED),
    **_rows(DEPLOYED, c.Fail, S.FAILED),
    **_rows(ACTIVE + NEEDS_ATTENTION, c.Abort, S.ABORTED),
    **_rows(ACTIVE, c.Expire, S.ABORTED),
    **_rows(NEEDS_ATTENTION + (S.ROLLING_BACK,), c.Acknowledge),
    **_rows(NEEDS_ATTENTION, c.Resolve, S.VERIFYING),
    **_rows(DEPLOYED + NEEDS_ATTENTION, c.StartRollback, S.ROLLING_BACK),
    **_rows((S.ROLLING_BACK,), c.RollbackSucceeded, S.ROLLED_BACK),
    **_rows((S.ROLLING_BACK,), c.RollbackFailed, S.ROLLBACK_FAILED),
    **change_control.TRANSITIONS,
    # Deploy steps (bot.domain.steps has each step's own table).
    **{(S.DEPLOYING, cmd): S.DEPLOYING for cmd in steps.WHILE_DEPLOYING},
    **_rows((S.DEPLOYING,), steps.StepFailed, S.FAILED),
    **_rows((S.FAILED,), steps.RetryStep, S.DEPLOYING),
}

# How a refused command is named in "You can't <verb> a session that is <state>."
VERBS: dict[type[Any], str] = {
    c.TickItem: "tick items on",
    c.UntickItem: "untick items on",
    c.SkipItem: "skip items on",
    c.UnskipItem: "unskip items on",
    c.RequestProbes: "run probes on",
    c.StartProbe: "start probes on",
    c.InterruptProbe: "interrupt probes on",
    c.RecordProbeResult: "record probe results on",
    c.SignOff: "sign off",
    c.StartDeployment: "start deploying",
    c.OverrideFreeze: "override a change freeze on",
    c.FinishDeployment: "finish deploying",
    c.StartMonitoring: "start monitoring",
    c.Complete: "complete",
    c.Fail: "fail",
    c.Abort: "abort",
    c.Expire: "expire",
    c.Acknowledge: "acknowledge an incident on",
    c.Resolve: "resolve an incident on",
    c.StartRollback: "roll back",
    c.RollbackSucceeded: "finish a rollback of",
    c.RollbackFailed: "fail a rollback of",
    **change_control.VERBS,
    **steps.VERBS,
}

# Which row of the policy table decides who may send each command.
ACTIONS: dict[type[Any], Action] = {
    c.TickItem: Action.TICK,
    c.UntickItem: Action.UNTICK,
    c.SkipItem: Action.SKIP,
    c.UnskipItem: Action.SKIP,  # who may skip may take a skip back
    c.RequestProbes: Action.RUN_PROBES,
    c.StartProbe: Action.RECORD,
    c.InterruptProbe: Action.RECORD,
    c.RecordProbeResult: Action.RECORD,
    c.SignOff: Action.SIGN_OFF,
    c.StartDeployment: Action.START_DEPLOYMENT,
    c.OverrideFreeze: Action.OVERRIDE_FREEZE,
    c.FinishDeployment: Action.FINISH_DEPLOYMENT,
    c.StartMonitoring: Action.RECORD,
    c.Complete: Action.COMPLETE,
    c.Fail: Action.RECORD,
    c.Abort: Action.ABORT,
    c.Expire: Action.RECORD,
    c.Acknowledge: Action.ACKNOWLEDGE,
    c.Resolve: Action.RESOLVE,
    c.StartRollback: Action.ROLL_BACK,
    c.RollbackSucceeded: Action.RECORD,
    c.RollbackFailed: Action.RECORD,
    **change_control.ACTIONS,
    **steps.ACTIONS,
}


@dataclass(frozen=True)
class Outcome:
    session: DeploySession
    events: tuple[Event, ...]

    @property
    def changed(self) -> bool:
        return bool(self.events)


def apply(session: DeploySession, command: c.Command, actor: Actor, at: datetime) -> Outcome:
    """Apply ``command`` by ``actor`` at ``at``; the input session is left untouched.

    Raises:
        DomainError: the state does not allow the command, or a gate refuses it.
        PermissionDenied: the policy does not allow the actor.
    """
    target = TRANSITIONS.get((session.state, type(command)))
    if target is None:
        raise DomainError(
            f"You can't {VERBS[type(command)]} a session that is {session.state.label}."
        )
    authorize(ACTIONS[type(command)], actor, _parties(session, command))
    # Checklist and policy are frozen; only the progress dicts change, so copy just those.
    new = replace(session, items=dict(session.items), signoffs=dict(session.signoffs))
    handler: Callable[[DeploySession, Any, Actor, datetime], list[Event]] = HANDLERS[type(command)]
    events = handler(new, command, actor, at)
    if target is not session.state:
        new.state = target
        if target.is_closed:
            new.closed_at = at
        events.append(
            Event("state_changed", actor.user_id, at, {"from": session.state, "to": target})
        )
    return Outcome(new, tuple(events))


def _parties(s: DeploySession, command: c.Command) -> Parties:
    signer = _signoff_rule(s, command.key) if isinstance(command, c.SignOff) else None
    if isinstance(command, c.SignRetrospective):
        signer = change_control.retrospective_rule(s)
    return s.policy.parties(s.requester, signer=signer, environment=s.environment)


# Handlers (the items' own are in bot.domain.items): check what the tables cannot (gates,
# reasons) and change the copy.
# Who may send each command is checked before, by ``apply``, against the policy table.


def _sign_off(s: DeploySession, cmd: c.SignOff, actor: Actor, at: datetime) -> list[Event]:
    rule = _signoff_rule(s, cmd.key)
    done = s.signoffs.get(rule.key)
    if done is not None:
        # Signatures past their ``valid_for`` make room: the role signs again.
        done = done.valid(rule, at)
    if done is not None and len(done.signers) >= rule.count:
        who = ", ".join(f"<@{by}>" for by in done.signers)
        raise DomainError(
            f"{rule.role} is already signed off by {who} at {done.last_at:%Y-%m-%d %H:%M} UTC."
        )
    if done is not None and actor.user_id in done.signers:
        raise DomainError(
            f"You have already signed off as {rule.role}: it takes {rule.count} different "
            "people, so ask another member of the role."
        )
    s.signoffs[rule.key] = (
        SignOffRecord(rule.key, rule.role, actor.user_id, at)
        if done is None
        else done.with_signer(actor.user_id, at)
    )
    have = len(s.signoffs[rule.key].signers)
    data = {"key": rule.key, "role": rule.role, "signed": have, "of": rule.count}
    return [Event("signed_off", actor.user_id, at, data)]


def _start_deployment(
    s: DeploySession, cmd: c.StartDeployment, actor: Actor, at: datetime
) -> list[Event]:
    if cmd.locked:
        raise DomainError(
            f"Deployment can't start: {cmd.locked} Ticks and sign-offs go on; "
            f"deploying waits for `/deploy unlock {s.environment}`."
        )
    # Break-glass skips the freeze (it was declared with a reason, audited and announced).
    if cmd.frozen is not None and not _overridden(s, cmd.frozen) and s.emergency is None:
        how = f"`/deploy override {s.id} <reason>`, then start the deployment"
        parties = s.policy.parties(s.requester, environment=s.environment)
        raise DomainError(
            frozen_message(cmd.frozen, "Deployment can't start", override_hint(parties, how))
        )
    # An override never opens a gate: the sign-offs are checked all the same.
    missing = s.gate_missing(s.policy.deploy_gate, at=at)
    if missing:
        raise GateClosed("Deployment can't start yet. Still missing: " + "; ".join(missing) + ".")
    return [Event("deployment_started", actor.user_id, at)]


def _overridden(s: DeploySession, window: FreezeWindow) -> bool:
    return s.freeze_override is not None and s.freeze_override.window.starts == window.starts


def _override_freeze(
    s: DeploySession, cmd: c.OverrideFreeze, actor: Actor, at: datetime
) -> list[Event]:
    if cmd.frozen is not None and _overridden(s, cmd.frozen):
        return []  # overridden before: once is enough
    parties = s.policy.parties(s.requester, environment=s.environment)
    s.freeze_override = override(cmd.frozen, cmd.reason, actor, parties, at)
    return [freeze_overridden(s.freeze_override, s.environment)]


def freeze_overridden(done: FreezeOverride, environment: str) -> Event:
    """The audited event of an override (its effect announces it in the channel)."""
    data = {"reason": done.reason, "window": done.window.describe(), "environment": environment}
    return Event("freeze_overridden", done.by, done.at, data)


def _finish_deployment(
    s: DeploySession, cmd: c.FinishDeployment, actor: Actor, at: datetime
) -> list[Event]:
    left = steps.unfinished(s)
    if left and actor != SYSTEM:
        raise DomainError(
            f"deploybot runs this deploy's steps and verifies when step {left[-1]} is done "
            f"(step {left[0]} is {s.steps[left[0] - 1].state.value})."
        )
    return [Event("deployment_finished", actor.user_id, at)]


def _start_monitoring(
    s: DeploySession, cmd: c.StartMonitoring, actor: Actor, at: datetime
) -> list[Event]:
    return [Event("monitoring_started", actor.user_id, at)]


def _complete(s: DeploySession, cmd: c.Complete, actor: Actor, at: datetime) -> list[Event]:
    running = [i.id for _, i in s.checklist.walk() if s.progress(i.id).status is RUNNING]
    if running:
        raise GateClosed(
            f"Verification is still running ({', '.join(running)}): the deploy can be "
            "completed once its probes have answered."
        )
    missing = s.gate_missing(s.policy.complete_gate)
    missing += [f"failed item *{item.text}*" for item, _ in s.failing_items()]
    if missing:
        raise GateClosed(
            "The deploy can't be completed yet. Still missing: " + "; ".join(missing) + "."
        )
    return [Event("session_completed", actor.user_id, at)]


def _abort(s: DeploySession, cmd: c.Abort, actor: Actor, at: datetime) -> list[Event]:
    reason = cmd.reason.strip()
    if not reason:
        raise DomainError("Say why you abort: a reason is required.")
    s.outcome_reason = reason
    return [Event("session_aborted", actor.user_id, at, {"reason": reason})]


def _expire(s: DeploySession, cmd: c.Expire, actor: Actor, at: datetime) -> list[Event]:
    s.outcome_reason = cmd.reason
    return [Event("session_expired", actor.user_id, at, {"reason": cmd.reason})]


def _fail(s: DeploySession, cmd: c.Fail, actor: Actor, at: datetime) -> list[Event]:
    s.outcome_reason = cmd.reason
    return [Event("session_failed", actor.user_id, at, {"reason": cmd.reason})]


def _start_rollback(
    s: DeploySession, cmd: c.StartRollback, actor: Actor, at: datetime
) -> list[Event]:
    return [Event("rollback_started", actor.user_id, at)]


def _acknowledge(s: DeploySession, cmd: c.Acknowledge, actor: Actor, at: datetime) -> list[Event]:
    """Records who is on the open incident; acknowledging it again changes nothing (a double
    click, or a second responder: the incident message already says who has it)."""
    incident = s.open_incident
    if incident is not None:
        if incident.is_acknowledged:
            return []
        s.incident = replace(incident, acknowledged_by=actor.user_id, acknowledged_at=at)
    return [Event("incident_acknowledged", actor.user_id, at)]


def _resolve(s: DeploySession, cmd: c.Resolve, actor: Actor, at: datetime) -> list[Event]:
    failed = [n for n in steps.unfinished(s) if s.steps[n - 1].state is StepState.FAILED]
    if failed and s.state is S.FAILED:
        raise DomainError(f"Step {failed[0]} of the deploy failed: retry it or roll back.")
    incident = s.open_incident
    if incident is not None:
        s.incident = replace(incident, resolved_by=actor.user_id, resolved_at=at)
    s.outcome_reason = None
    return [Event("incident_resolved", actor.user_id, at, {"note": cmd.note})]


def _rollback_succeeded(
    s: DeploySession, cmd: c.RollbackSucceeded, actor: Actor, at: datetime
) -> list[Event]:
    s.outcome_reason = "rolled back"
    return [Event("rollback_succeeded", actor.user_id, at)]


def _rollback_failed(
    s: DeploySession, cmd: c.RollbackFailed, actor: Actor, at: datetime
) -> list[Event]:
    s.outcome_reason = cmd.detail
    return [Event("rollback_failed", actor.user_id, at, {"detail": cmd.detail})]


HANDLERS: dict[type[Any], Callable[[DeploySession, Any, Actor, datetime], list[Event]]] = {
    c.TickItem: items.tick,
    c.UntickItem: items.untick,
    c.SkipItem: items.skip,
    c.UnskipItem: items.unskip,
    c.RequestProbes: items.request_probes,
    c.StartProbe: items.start_probe,
    c.InterruptProbe: items.interrupt_probe,
    c.RecordProbeResult: items.probe_result,
    c.SignOff: _sign_off,
    c.StartDeployment: _start_deployment,
    c.OverrideFreeze: _override_freeze,
    c.FinishDeployment: _finish_deployment,
    c.StartMonitoring: _start_monitoring,
    c.Complete: _complete,
    c.Abort: _abort,
    c.Expire: _expire,
    c.Fail: _fail,
    c.Acknowledge: _acknowledge,
    c.Resolve: _resolve,
    c.StartRollback: _start_rollback,
    c.RollbackSucceeded: _rollback_succeeded,
    c.RollbackFailed: _rollback_failed,
    **change_control.HANDLERS,
    **dict.fromkeys(steps.ACTIONS, steps.move),
}


def _signoff_rule(s: DeploySession, key: str) -> SignOffRule:
    rule = s.policy.rule(key)
    if rule is None:
        known = ", ".join(r.role for r in s.policy.signoffs) or "none"
        raise DomainError(f"This deploy needs no sign-off '{key}' (required: {known}).")
    return rule
