"""Effects of change-control events: break-glass pages on-call (informational) and says so
in the incident channel; a new version and a signed retrospective are told in the session's
thread. Rows of :data:`bot.app.effects.EFFECTS`, written in the bus's unit of work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.app.incidents import SUMMARY
from bot.integrations.pagerduty import page_payload
from bot.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.app.effects import Change, Effects, Rule
    from bot.domain import Event

EMERGENCY = "emergency"  # the PagerDuty component (and dedup key part) of a break-glass page


def emergency_declared(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """Page the environment's on-call with an informational event, and post in the incident
    channel: an emergency deploy is theirs to know about, not an alert to fix."""
    session = change.after
    env = fx.config.environment(session.environment)
    reason = str(event.data["reason"])
    skipped = "; ".join(str(s) for s in event.data.get("skipped", ())) or "nothing"
    summary = f"Emergency deploy {session.title} by {event.actor}: {reason}"
    if env.pagerduty is not None:
        page = page_payload(
            action="trigger",
            env_name=session.environment,
            routing_key_env=env.pagerduty.routing_key_env,
            session_id=change.session_id,
            probe=EMERGENCY,
            summary=summary,
            severity="info",
            details={"reason": reason, "skipped": skipped, "requester": event.actor},
            link=fx.incidents.link(session),
            at=event.at,
        )
        page["incident_thread"] = False  # no incident thread to wait for: the summary links
        uow.enqueue(
            topic="pagerduty",
            key=f"{page['dedup_key']}:declared",
            payload=page,
            session_id=change.session_id,
            at=event.at,
            ordering_key=page["dedup_key"],
        )
    text = (
        f":rotating_light: <@{event.actor}> declared an *emergency deploy* "
        f"#{change.session_id} ({session.title}): {reason}\nSkipped: {skipped}. "
        "A retrospective sign-off is owed afterwards."
    )
    uow.enqueue(
        topic="slack",
        key=f"{change.session_id}:emergency_declared",
        payload={"kind": "announce", "channel": env.incident_channel or env.channel, "text": text},
        session_id=change.session_id,
        at=event.at,
    )


def version_changed(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """One note in the session's thread: the new version and the sign-offs withdrawn."""
    withdrawn = [e for e in change.events if e.kind == "signoff_withdrawn"]
    text = (
        f":arrows_counterclockwise: <@{event.actor}> changed the version from "
        f"`{event.data['from'] or '(none)'}` to `{event.data['to']}`."
    )
    if withdrawn:
        names = ", ".join(
            f"{e.data['role']} ({', '.join(f'<@{u}>' for u in e.data['signers'])})"
            for e in withdrawn
        )
        text += f" Sign-offs withdrawn: {names}. Please sign again for the new version."
    fx.incidents.thread(uow, change.after, text, at=event.at, purpose=SUMMARY)


def retrospective_signed(fx: Effects, uow: UnitOfWork, change: Change, event: Event) -> None:
    """Told in the session's thread; the informational page is resolved: nothing is owed."""
    env = fx.config.environment(change.after.environment)
    if env.pagerduty is not None and change.after.emergency is not None:
        page = page_payload(
            action="resolve",
            env_name=change.after.environment,
            routing_key_env=env.pagerduty.routing_key_env,
            session_id=change.session_id,
            probe=EMERGENCY,
            summary=f"Retrospective of {change.after.title} signed",
            severity="info",
            details={},
            link=None,
            at=event.at,
        )
        uow.enqueue(
            topic="pagerduty",
            key=f"{page['dedup_key']}:retrospective",
            payload=page,
            session_id=change.session_id,
            at=event.at,
            ordering_key=page["dedup_key"],
        )
    note = str(event.data.get("note") or "")
    text = f":memo: <@{event.actor}> signed the retrospective of this emergency deploy"
    fx.incidents.thread(
        uow, change.after, text + (f": {note}" if note else "."), at=event.at, purpose=SUMMARY
    )


CHANGE_EFFECTS: dict[str, tuple[Rule, ...]] = {
    "emergency_declared": (emergency_declared,),
    "version_changed": (version_changed,),
    "retrospective_signed": (retrospective_signed,),
}
