"""The deploy steps of a session: a table of each step's states, and the commands that move them.

A session whose environment declares ``deploy:`` steps carries one :class:`StepProgress` per
step (in order, from when it opened). The bot moves them as it runs them: started (claimed,
then ``running``), applied (the change is made; ``waiting`` for the rollout, the pause),
``done`` or ``failed`` with the reason. A failed step fails the session and opens its
incident; *Retry step* puts it back to ``pending``. People move only a pause, by *Continue*.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot.domain.errors import DomainError, PermissionDenied
from bot.domain.events import Event
from bot.domain.policy import SYSTEM, Action, Actor
from bot.domain.session import DeploySession, Incident
from bot.domain.step_progress import StepProgress, StepState

# Commands on one step (``step`` counts from 1).


@dataclass(frozen=True)
class StartStep:
    """The bot claimed the step and starts applying it."""

    step: int


@dataclass(frozen=True)
class StepApplied:
    """The step's change is made; it now waits (a rollout, a pause)."""

    step: int
    detail: str


@dataclass(frozen=True)
class StepDone:
    step: int
    detail: str


@dataclass(frozen=True)
class StepFailed:
    """The step failed (or a restart interrupted it): the session fails, an incident opens."""

    step: int
    reason: str


@dataclass(frozen=True)
class ContinueStep:
    """A person ends a pause; ``by`` are the roles the step lets do so."""

    step: int
    by: tuple[str, ...]


@dataclass(frozen=True)
class RetryStep:
    """Run a failed step again (the session deploys again)."""

    step: int


StepCommand = StartStep | StepApplied | StepDone | StepFailed | ContinueStep | RetryStep

S = StepState
STEP_TRANSITIONS: dict[tuple[StepState, type[Any]], StepState] = {
    (S.PENDING, StartStep): S.RUNNING,
    (S.RUNNING, StepApplied): S.WAITING,
    (S.RUNNING, StepDone): S.DONE,
    (S.WAITING, StepDone): S.DONE,
    (S.RUNNING, StepFailed): S.FAILED,
    (S.WAITING, StepFailed): S.FAILED,
    (S.WAITING, ContinueStep): S.WAITING,
    (S.FAILED, RetryStep): S.PENDING,
}

# The session's table lets these through while deploying (a failure fails the session;
# a retry deploys again: bot.domain.transitions).
WHILE_DEPLOYING = (StartStep, StepApplied, StepDone, ContinueStep)

ACTIONS: dict[type[Any], Action] = {
    StartStep: Action.RECORD,
    StepApplied: Action.RECORD,
    StepDone: Action.RECORD,
    StepFailed: Action.RECORD,
    # Anyone asks; the pause's own roles decide (``move``).
    ContinueStep: Action.CONTINUE_STEP,
    RetryStep: Action.RETRY_STEP,
}

VERBS: dict[type[Any], str] = {
    StartStep: "start a deploy step of",
    StepApplied: "record a deploy step of",
    StepDone: "finish a deploy step of",
    StepFailed: "fail a deploy step of",
    ContinueStep: "continue a deploy step of",
    RetryStep: "retry a deploy step of",
}

EVENTS: dict[type[Any], str] = {
    StartStep: "deploy_step_started",
    StepApplied: "deploy_step_applied",
    StepDone: "deploy_step_done",
    StepFailed: "deploy_step_failed",
    ContinueStep: "deploy_step_continued",
    RetryStep: "deploy_step_retried",
}


def unfinished(s: DeploySession) -> list[int]:
    """The steps not done yet (1-based)."""
    return [n for n, p in enumerate(s.steps, start=1) if p.state is not S.DONE]


def current(s: DeploySession) -> int | None:
    """The first step not done (1-based), or None when all are."""
    left = unfinished(s)
    return left[0] if left else None


def move(s: DeploySession, cmd: StepCommand, actor: Actor, at: datetime) -> list[Event]:
    """Apply a step command to ``s`` (a copy the session's table has let through).

    Raises:
        DomainError: no such step, the step's state does not allow it, or not its turn.
        PermissionDenied: *Continue* by someone outside the pause's roles.
    """
    if not 0 < cmd.step <= len(s.steps):
        raise DomainError(f"This deploy has no step {cmd.step}.")
    before = s.steps[cmd.step - 1]
    target = STEP_TRANSITIONS.get((before.state, type(cmd)))
    if target is None:
        raise DomainError(f"Step {cmd.step} ({before.name}) is {before.state.value}.")
    if isinstance(cmd, StartStep) and current(s) != cmd.step:
        raise DomainError(f"Step {cmd.step} is not next: step {current(s)} is.")
    if isinstance(cmd, ContinueStep) and cmd.by and actor != SYSTEM and not actor.has_any(cmd.by):
        raise PermissionDenied(
            f"You can't continue step {cmd.step}: only members of {', '.join(cmd.by)} can."
        )
    after = replace(before, state=target, since=at)
    data: dict[str, Any] = {"step": cmd.step, "name": before.name}
    if isinstance(cmd, StartStep):
        after = replace(after, attempt=before.attempt + 1, detail=None, continued_by=None)
    elif isinstance(cmd, StepApplied | StepDone):
        after = replace(after, detail=cmd.detail)
        data["detail"] = cmd.detail
    elif isinstance(cmd, StepFailed):
        after = replace(after, detail=cmd.reason)
        data["detail"] = cmd.reason
    elif isinstance(cmd, ContinueStep):
        if before.continued_by is not None:
            return []  # a double click: continued once is enough
        after = replace(after, since=before.since, continued_by=actor.user_id)
    elif isinstance(cmd, RetryStep):
        after = replace(after, detail=None)
    data["attempt"] = after.attempt
    steps = list(s.steps)
    steps[cmd.step - 1] = after
    s.steps = tuple(steps)
    events = [Event(EVENTS[type(cmd)], actor.user_id, at, data)]
    if isinstance(cmd, StepFailed):
        events += _fail(s, cmd, before, actor, at)
    elif isinstance(cmd, RetryStep) and s.open_incident is not None:
        s.incident = replace(s.open_incident, resolved_by=actor.user_id, resolved_at=at)
        s.outcome_reason = None
    return events


def _fail(
    s: DeploySession, cmd: StepFailed, step: StepProgress, actor: Actor, at: datetime
) -> list[Event]:
    """The session fails with the step's reason and opens an incident (unless one is open)."""
    reason = f"step {cmd.step} ({step.name}) failed: {cmd.reason}"[:500]
    s.outcome_reason = reason
    events = [Event("session_failed", actor.user_id, at, {"reason": reason})]
    if s.open_incident is None:
        component = f"deploy step {cmd.step}"
        s.incident = Incident(opened_at=at, probe=component, summary=cmd.reason[:500])
        opened = {"probe": component, "summary": cmd.reason[:500], "step": cmd.step}
        events.append(Event("incident_opened", actor.user_id, at, opened))
    return events
