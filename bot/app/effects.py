"""The one table that maps what happened (a domain event) to what must follow (effects).

The bus calls :func:`record_effects` inside the unit of work that saved the change, so each
effect is an outbox row committed with the change and its audit entries: a crash loses
nothing, and any replica's worker may carry it out. Every change also refreshes the
session's Slack messages (one ``publish`` row per session revision; the publisher
coalesces them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.app.change_effects import CHANGE_EFFECTS
from bot.app.follow_ups import FOLLOW_UPS
from bot.app.incidents import INCIDENT, SUMMARY, Incidents, describe_target
from bot.app.schedules import next_occurrence, schedule
from bot.app.step_effects import STEP_EFFECTS
from bot.config.schema import Config
from bot.domain import SYSTEM, DeploySession, Event
from bot.domain.checklist import Severity
from bot.rendering.incident import Failure
from bot.storage.outbox import pending
from bot.storage.probe_runs import ProbeRun
from bot.storage.schedule_slots import OpenSession
from bot.storage.uow import UnitOfWork


@dataclass(frozen=True)
class Change:
    """What one unit of work did to a session, as the effect rules see it.

    ``reply_to`` is the response URL of the person who asked, when a rule's effect should
    answer them (a probe round's verdict).
    """

    after: DeploySession
    events: tuple[Event, ...]
    revision: int
    reply_to: str | None = None

    @property
    def session_id(self) -> int:
        assert self.after.id is not None
        return self.after.id


@dataclass(frozen=True)
class Effects:
    """What the rules need: the config and the incident effect builders."""

    config: Config
    incidents: Incidents

    def probe_round(self, uow: UnitOfWork, change: Change, why: str, at: datetime) -> None:
        if not any(item.probe for _, item in change.after.checklist.walk()):
            return
        payload: dict[str, Any] = {"session_id": change.session_id, "why": why}
        if change.reply_to:
            payload["reply_to"] = change.reply_to
        uow.enqueue(
            topic="probes",
            key=f"{change.session_id}:{change.revision}:{why}",
            payload=payload,
            session_id=change.session_id,
            at=at,
        )


Rule = Callable[[Effects, UnitOfWork, Change, Event], None]


def _probes_requested(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    fx.probe_round(uow, change, str(event.data.get("why") or "a manual run"), event.at)


def _verify(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    fx.probe_round(uow, change, "verification", event.at)


def _probe_failed(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    session, item_id = change.after, str(event.data["item"])
    found = session.find_item(item_id)
    if found is None or found[1].probe is None:
        return
    probe = found[1].probe
    severity = str(event.data.get("severity") or Severity.CRITICAL.value)
    summary = str(event.data.get("summary", ""))
    runs = _runs_of(uow, change, probe)  # read once: every rule below needs them
    failure = Failure(probe, summary, severity, event.at, runs[-1].detail if runs else "")
    again = _failed_before(runs)
    if not event.data.get("runnable", True):
        if not again:
            fx.incidents.probe_not_runnable(uow, session, failure)
        return
    if not event.data.get("alert", True):
        if not again:
            fx.incidents.probe_warned(uow, session, failure)
        return
    opened = any(
        e.kind == "incident_opened" and e.data.get("probe") == probe for e in change.events
    )
    fx.incidents.probe_failed(uow, session, failure, again=again, opened=opened)


def _probe_passed(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    found = change.after.find_item(str(event.data["item"]))
    if found is None or found[1].probe is None:
        return
    probe = found[1].probe
    if _failed_before(_runs_of(uow, change, probe)):
        summary = str(event.data.get("summary", ""))
        fx.incidents.probe_recovered(uow, change.after, probe, summary, event.at)


def _probe_interrupted(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """One note in the session's thread for the items a stopped process left, and one new
    round, unless a round is already due (the stopped process's own, which any replica
    takes over) or the session is closed."""
    interrupted = [e for e in change.events if e.kind == "probe_interrupted"]
    if event is not interrupted[0]:
        return
    items = ", ".join(str(e.data["item"]) for e in interrupted)
    again = not change.after.state.is_closed and not pending(uow.db, "probes", change.session_id)
    text = f":warning: Probe run of item {items} interrupted: {event.data['reason']}."
    if again:
        text += " The probes run again now."
    fx.incidents.thread(uow, change.after, text, at=event.at, purpose=SUMMARY)
    if again:
        fx.probe_round(uow, change, "a re-run after an interruption", event.at)


def _runs_of(uow: UnitOfWork, change: Change, probe: str) -> list[ProbeRun]:
    """The probe's runs for the session, in order; the current one is written in this unit
    of work before the effects."""
    return [r for r in uow.probe_runs.for_session(change.session_id) if r.probe == probe]


def _failed_before(runs: list[ProbeRun]) -> bool:
    """Did the run before the latest one fail?"""
    earlier = [r for r in runs if r.at < runs[-1].at] if runs else []
    return bool(earlier) and not earlier[-1].ok


def _acknowledged(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    fx.incidents.responder(uow, change.after, "acknowledge", event.actor, event.at)


def _resolved(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    fx.incidents.responder(uow, change.after, "resolve", event.actor, event.at)
    fx.probe_round(uow, change, "verification", event.at)


def _rollback_started(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    targets = fx.config.environment(change.after.environment).rollback
    lines = "\n".join(f"• {describe_target(t)}" for t in targets) or "• (no targets)"
    who = "deploybot" if event.actor == SYSTEM.user_id else f"<@{event.actor}>"
    text = f":rewind: {who} started a rollback:\n{lines}"
    fx.incidents.thread(uow, change.after, text, at=event.at)
    uow.enqueue(
        topic="rollback",
        key=f"{change.session_id}:{change.revision}",
        payload={"session_id": change.session_id},
        session_id=change.session_id,
        at=event.at,
    )


def _report_requested(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """Post the report in the session's thread, with its files, and tell the asker where.
    It is rendered when delivered, from what is stored then (this request included)."""
    payload: dict[str, Any] = {
        "kind": "report",
        "session_id": change.session_id,
        "requested_by": event.actor,
    }
    if change.reply_to:
        payload["reply_to"] = change.reply_to
    uow.enqueue(
        topic="slack",
        key=f"{change.session_id}:report:{event.at.isoformat()}:{event.actor}",
        payload=payload,
        session_id=change.session_id,
        at=event.at,
        ordering_key=f"{SUMMARY}:{change.session_id}",
    )


def _arm(*jobs: str) -> Rule:
    """Arm the session's next slot of ``jobs`` (its expiry, first reminder, first round)."""

    def rule(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
        after = change.after
        since = event.at if event.kind == "monitoring_started" else None
        view = OpenSession(
            change.session_id, after.environment, after.state.value, after.opened_at, since
        )
        found = (next_occurrence(fx.config, view, job, event.at) for job in jobs)
        schedule(uow, [o for o in found if o is not None], at=event.at)

    return rule


def _freeze_overridden(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """Said in the environment's channel, not only the session's thread: a freeze concerns
    everyone who watches the environment."""
    session = change.after
    text = (
        f":snowflake: <@{event.actor}> overrode the change freeze to deploy "
        f"#{change.session_id} ({session.title}): {event.data['reason']}\n"
        f"Freeze: {event.data['window']}"
    )
    uow.enqueue(
        topic="slack",
        key=f"{change.session_id}:freeze_overridden:{event.at.isoformat()}",
        payload={
            "kind": "announce",
            "channel": fx.config.environment(session.environment).channel,
            "text": text,
        },
        session_id=change.session_id,
        at=event.at,
    )


def _note(text: Callable[[Event], str], purpose: str = INCIDENT) -> Rule:
    """A line in the incident thread (or, by ``purpose``, the session's own thread)."""

    def rule(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
        fx.incidents.thread(uow, change.after, text(event), at=event.at, purpose=purpose)

    return rule


ROLLED_BACK = ":white_check_mark: Rolled back, and the probes pass."

EFFECTS: dict[str, tuple[Rule, ...]] = {
    "session_opened": (_arm("expire", "remind"),),
    "monitoring_started": (_arm("monitor"),),
    "probes_requested": (_probes_requested,),
    "deployment_finished": (_verify,),
    "probe_failed": (_probe_failed,),
    "probe_passed": (_probe_passed,),
    "probe_interrupted": (_probe_interrupted,),
    "incident_acknowledged": (_acknowledged,),
    "incident_resolved": (_resolved,),
    "rollback_started": (_rollback_started,),
    "rollback_step_done": (
        _note(lambda e: f":white_check_mark: Step {e.data['step']}: {e.data['detail']}"),
    ),
    "rollback_verifying": (_note(lambda e: f":hourglass: Rolled back, but {e.data['detail']}."),),
    "rollback_succeeded": (_note(lambda e: ROLLED_BACK),),
    "rollback_failed": (_note(lambda e: f":fire: Rollback failed: {e.data['detail']}"),),
    "monitoring_unfinished": (_note(lambda e: str(e.data["text"]), SUMMARY),),
    "reminder": (_note(lambda e: str(e.data["text"]), SUMMARY),),
    "report_requested": (_report_requested,),
    "freeze_overridden": (_freeze_overridden,),
    **CHANGE_EFFECTS,
}
# Deploy steps' rules (bot.app.step_effects) follow those above for the same event.
for _kind, _rules in STEP_EFFECTS.items():
    EFFECTS[_kind] = EFFECTS.get(_kind, ()) + _rules


def redraw_checklist(
    uow: UnitOfWork, session_id: int, *, at: datetime, summary: bool = False
) -> None:
    """Send the checklist messages again though nothing changed: a refused click left its
    checkbox toggled in the clicker's Slack client, which only a new render puts right.
    With ``summary``, the summary too (a refused *Start deployment* shows which sign-off
    lapsed since it was last drawn)."""
    for purpose in uow.slack_messages.for_session(session_id):
        if purpose.startswith("section:") or (summary and purpose == SUMMARY):
            uow.slack_messages.stale(session_id, purpose)
    uow.enqueue(
        topic="publish",
        key=f"{session_id}:redraw:{at.isoformat()}",
        payload={"session_id": session_id, "revision": 0},
        session_id=session_id,
        at=at,
        ordering_key=f"publish:{session_id}",
    )


def record_effects(fx: Effects, uow: UnitOfWork, change: Change) -> None:
    """Write the outbox rows ``change`` calls for, in ``uow``'s transaction."""
    for event in change.events:
        for rule in EFFECTS.get(event.kind, ()):
            rule(fx, uow, change, event)
    for follow_up in FOLLOW_UPS:  # what concerns people beyond the session (queue, home)
        follow_up(fx, uow, change)
    if change.events:
        uow.enqueue(
            topic="publish",
            key=f"{change.session_id}:{change.revision}",
            payload={"session_id": change.session_id, "revision": change.revision},
            session_id=change.session_id,
            at=change.events[-1].at,
            ordering_key=f"publish:{change.session_id}",
        )
