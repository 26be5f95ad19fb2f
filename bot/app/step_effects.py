"""What deploy steps' events call for: the runner's outbox row, a line per step in the
session's thread, the page of a failed step (rows of :data:`bot.app.effects.EFFECTS`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.app.incidents import SUMMARY
from bot.domain.step_progress import StepState
from bot.integrations.pagerduty import change_payload
from bot.rendering.incident import Failure
from bot.rendering.limits import clip
from bot.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.app.effects import Change, Effects, Rule
    from bot.domain import Event

OUTPUT_CHARS = 2_500  # of a command's output per thread message


def run_steps(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """Queue the runner (one row at a time per session: its ordering key)."""
    if not change.after.steps:
        return
    uow.enqueue(
        topic="deploy",
        key=f"{change.session_id}:{change.revision}:{event.kind}",
        payload={"session_id": change.session_id},
        session_id=change.session_id,
        at=event.at,
        ordering_key=f"deploy:{change.session_id}",
    )


def _started(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    if not change.after.steps:
        return
    count = len(change.after.steps)
    text = f":rocket: <@{event.actor}> started the deployment: deploybot runs {count} step"
    text += "s." if count > 1 else "."
    fx.incidents.thread(uow, change.after, text, at=event.at, purpose=SUMMARY)


def _line(icon: str, verb: str) -> Rule:
    def rule(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
        data = event.data
        text = f"{icon} Step {data['step']} ({data['name']}) {verb}"
        if data.get("detail"):
            text += f": {data['detail']}"
        fx.incidents.thread(uow, change.after, clip(text, 3000), at=event.at, purpose=SUMMARY)

    return rule


ROUND_ICONS = {"passed": ":white_check_mark:", "failed": ":x:", "inconclusive": ":grey_question:"}


def _measured(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """An analysis round, or a Lambda alias moved to its next weight."""
    data = event.data
    if data["phase"] == "shifted":
        text = f":twisted_rightwards_arrows: Step {data['step']}: {data['detail']}"
    else:
        icon = ROUND_ICONS.get(str(data["phase"]), ":bar_chart:")
        stage = f" at {data['stage']}%" if data.get("stage") else ""
        text = f"{icon} Step {data['step']} analysis{stage}: {data['phase']}: {data['detail']}"
    fx.incidents.thread(uow, change.after, clip(text, 3000), at=event.at, purpose=SUMMARY)


def _output(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    lines = "\n".join(str(line) for line in event.data["lines"]).replace("```", "'''")
    text = f"Step {event.data['step']}:\n```{lines[-OUTPUT_CHARS:]}```"
    fx.incidents.thread(uow, change.after, text, at=event.at, purpose=SUMMARY)


def _failed(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """Page about the step (its incident opened in the same change); not when a person
    aborted the deploy (the incident only offers the rollback)."""
    if event.data.get("halted"):
        return
    component = f"deploy step {event.data['step']}"
    detail = str(event.data.get("detail", ""))
    failure = Failure(component, f"{event.data['name']}: {detail}", "critical", event.at)
    opened = any(
        e.kind == "incident_opened" and e.data.get("probe") == component for e in change.events
    )
    fx.incidents.probe_failed(uow, change.after, failure, again=False, opened=opened)


def _retried(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """The page of the failed step resolves; the runner goes on."""
    component = f"deploy step {event.data['step']}"
    fx.incidents.resolve_page(uow, change.after, component, at=event.at)
    text = f":repeat: <@{event.actor}> retries step {event.data['step']} ({event.data['name']})."
    fx.incidents.thread(uow, change.after, text, at=event.at, only_if_open=True)
    run_steps(fx, uow, change, event)


def _halt_requested(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    text = (
        f":octagonal_sign: <@{event.actor}> aborted the deployment ({event.data['reason']}): "
        "it stops after the current step; then roll back from the incident, or retry."
    )
    fx.incidents.thread(uow, change.after, clip(text, 3000), at=event.at, purpose=SUMMARY)
    run_steps(fx, uow, change, event)


def _continued(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    text = f":arrow_forward: <@{event.actor}> continued step {event.data['step']}."
    fx.incidents.thread(uow, change.after, text, at=event.at, purpose=SUMMARY)
    run_steps(fx, uow, change, event)


def _rolled_back(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """A rollback after a failed step worked: that step's page resolves (no probe will)."""
    for number, step in enumerate(change.after.steps, start=1):
        if step.state is StepState.FAILED:
            fx.incidents.resolve_page(uow, change.after, f"deploy step {number}", at=event.at)


CHANGES = {
    "deployment_started": "started",
    "deployment_finished": "finished",
    "rollback_succeeded": "rolled back",
}


def _change_event(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """A PagerDuty change event on the environment's routing key, for a deploy the bot runs
    (its steps): on-call sees it on the service's timeline."""
    env = fx.config.environment(change.after.environment)
    if not change.after.steps or env.pagerduty is None:
        return
    session = change.after
    done = [s.name for s in session.steps if s.state is StepState.DONE]
    details = {
        "version": session.version or None,
        "service": session.service or None,
        "requester": session.requester,
        "event": event.kind,
        "steps": f"{len(done)} of {len(session.steps)} done",
    }
    failed = [s for s in session.steps if s.state is StepState.FAILED]
    if failed:
        details["failed_step"] = f"{failed[0].name}: {failed[0].detail}"
    payload = change_payload(
        env_name=session.environment,
        routing_key_env=env.pagerduty.routing_key_env,
        session_id=change.session_id,
        summary=f"{session.title}: deploy {CHANGES[event.kind]}",
        details={k: v for k, v in details.items() if v is not None},
        link=fx.incidents.link(session),
        at=event.at,
    )
    uow.enqueue(
        topic="pagerduty",
        key=f"{change.session_id}:change:{change.revision}:{event.kind}",
        payload=payload,
        session_id=change.session_id,
        at=event.at,
        ordering_key=f"deploybot/{session.environment}/session-{change.session_id}/changes",
    )


STEP_EFFECTS: dict[str, tuple[Rule, ...]] = {
    "rollback_succeeded": (_rolled_back, _change_event),
    "deployment_finished": (_change_event,),
    "deployment_started": (_started, run_steps, _change_event),
    "deploy_step_started": (_line(":arrow_forward:", "started"),),
    "deploy_step_applied": (_line(":hourglass_flowing_sand:", "applied, waiting"),),
    "deploy_step_done": (_line(":white_check_mark:", "done"),),
    "deploy_step_failed": (_line(":x:", "failed"), _failed),
    "deploy_step_output": (_output,),
    "deploy_step_measured": (_measured,),
    "deploy_halt_requested": (_halt_requested,),
    "deploy_step_continued": (_continued,),
    "deploy_step_retried": (_retried,),
}
