"""What deploy steps' events call for: the runner's outbox row, a line per step in the
session's thread, the page of a failed step (rows of :data:`bot.app.effects.EFFECTS`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.app.incidents import SUMMARY
from bot.domain.step_progress import StepState
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


def _output(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    lines = "\n".join(str(line) for line in event.data["lines"]).replace("```", "'''")
    text = f"Step {event.data['step']}:\n```{lines[-OUTPUT_CHARS:]}```"
    fx.incidents.thread(uow, change.after, text, at=event.at, purpose=SUMMARY)


def _failed(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """Page about the step (its incident opened in the same change)."""
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


def _continued(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    text = f":arrow_forward: <@{event.actor}> continued step {event.data['step']}."
    fx.incidents.thread(uow, change.after, text, at=event.at, purpose=SUMMARY)
    run_steps(fx, uow, change, event)


def _rolled_back(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """A rollback after a failed step worked: that step's page resolves (no probe will)."""
    for number, step in enumerate(change.after.steps, start=1):
        if step.state is StepState.FAILED:
            fx.incidents.resolve_page(uow, change.after, f"deploy step {number}", at=event.at)


STEP_EFFECTS: dict[str, tuple[Rule, ...]] = {
    "rollback_succeeded": (_rolled_back,),
    "deployment_started": (_started, run_steps),
    "deploy_step_started": (_line(":arrow_forward:", "started"),),
    "deploy_step_applied": (_line(":hourglass_flowing_sand:", "applied, waiting"),),
    "deploy_step_done": (_line(":white_check_mark:", "done"),),
    "deploy_step_failed": (_line(":x:", "failed"), _failed),
    "deploy_step_output": (_output,),
    "deploy_step_continued": (_continued,),
    "deploy_step_retried": (_retried,),
}
