"""The incident message: what failed, who is paged, where the incident stands, and the
buttons that still make sense.

:func:`incident_message` renders it from the session alone (its incident, its state), so the
message can be refreshed after every change like the session's other messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.domain import TRANSITIONS, DeploySession, Incident, SessionState
from bot.domain.commands import Acknowledge, Resolve, StartRollback
from bot.rendering.checklist import mention
from bot.rendering.ids import ActionId, pack
from bot.rendering.limits import MAX_HEADER_TEXT, MAX_SECTION_TEXT, JsonBlock, clip
from bot.rendering.session import button, confirm_dialog
from bot.rendering.steps import failed_step
from bot.rendering.times import slack_date

S = SessionState


@dataclass(frozen=True)
class Failure:
    probe: str
    summary: str
    severity: str
    since: datetime
    detail: str = ""  # the failed run's detail (redacted when stored); for the page only


class IncidentPhase(StrEnum):
    """Where an incident stands, as its message shows it."""

    FAILED = "failed"  # nobody has acknowledged yet
    ACKNOWLEDGED = "acknowledged"
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"
    ROLLBACK_FAILED = "rollback failed"
    RESOLVED = "resolved"
    CLOSED = "closed"  # the deploy was aborted or completed without resolving it


PHASE_EMOJI: dict[IncidentPhase, str] = {
    IncidentPhase.FAILED: "🚨",
    IncidentPhase.ACKNOWLEDGED: "👀",
    IncidentPhase.ROLLING_BACK: "⏪",
    IncidentPhase.ROLLED_BACK: "↩️",
    IncidentPhase.ROLLBACK_FAILED: "🔥",
    IncidentPhase.RESOLVED: "✅",
    IncidentPhase.CLOSED: "🛑",
}
_ROLLBACK_PHASES = {
    S.ROLLING_BACK: IncidentPhase.ROLLING_BACK,
    S.ROLLED_BACK: IncidentPhase.ROLLED_BACK,
    S.ROLLBACK_FAILED: IncidentPhase.ROLLBACK_FAILED,
}
# Pieces of user or probe text, cut so that the whole message stays within Slack's limits.
PROBE_CHARS = 150
SUMMARY_CHARS = 1_000
REASON_CHARS = 1_000
ONCALL_CHARS = 1_000


def incident_phase(session: DeploySession, incident: Incident) -> IncidentPhase:
    """A resolved incident is over; otherwise a rollback's progress, then acknowledgement."""
    if not incident.is_open:
        return IncidentPhase.RESOLVED
    if session.state in _ROLLBACK_PHASES:
        return _ROLLBACK_PHASES[session.state]
    if session.state.is_closed:
        return IncidentPhase.CLOSED
    if incident.is_acknowledged:
        return IncidentPhase.ACKNOWLEDGED
    return IncidentPhase.FAILED


def incident_message(
    session: DeploySession,
    *,
    oncall: Sequence[str],
    rollback: Sequence[str],
    session_link: str | None = None,
) -> list[JsonBlock]:
    """The incident thread's first message as the session's incident and state are now.

    Args:
        oncall: Slack user IDs (or ``@handle``/``S…`` groups) to notify.
        rollback: one line per rollback target, shown in the roll back confirmation.
        session_link: a permalink to the session's thread, shown when given.

    Raises:
        ValueError: the session has no incident.
    """
    incident = _incident(session)
    phase = incident_phase(session, incident)
    what = (
        f"*{clip(incident.probe, PROBE_CHARS, mrkdwn=True)}* (critical) failed: "
        f"{clip(incident.summary, SUMMARY_CHARS, mrkdwn=True)}"
    )
    blocks = [
        _header(f"{PHASE_EMOJI[phase]} {session.title}: {incident.probe} failed"),
        _facts(session, what, incident.opened_at, oncall, session_link),
        _section("\n".join(_status_lines(session, incident, phase))),
    ]
    buttons = _buttons(session, phase, rollback)
    if buttons:
        blocks.append({"type": "actions", "block_id": "incident", "elements": buttons})
    return blocks


def incident_message_text(session: DeploySession) -> str:
    """The notification text of :func:`incident_message`.

    Raises:
        ValueError: the session has no incident.
    """
    incident = _incident(session)
    status = _status_lines(session, incident, incident_phase(session, incident))[0]
    probe = clip(incident.probe, PROBE_CHARS, mrkdwn=True)
    summary = clip(incident.summary, SUMMARY_CHARS, mrkdwn=True)
    head = f"Incident: {session.title} deploy #{session.id}: {probe} failed: {summary}"
    return f"{head} · {status.removeprefix('*Status:* ')}"


def notify(member: str) -> str:
    """A mention for a role member: a user ID, a user-group ID or an ``@handle``."""
    if member.startswith("@"):
        return member
    if member.startswith("S"):
        return f"<!subteam^{member}>"
    return f"<@{member}>"


def _incident(session: DeploySession) -> Incident:
    if session.incident is None:
        raise ValueError(f"deploy #{session.id} has no incident")
    return session.incident


def _status_lines(session: DeploySession, incident: Incident, phase: IncidentPhase) -> list[str]:
    acknowledged = (
        f"Acknowledged by {mention(incident.acknowledged_by)} "
        f"{slack_date(incident.acknowledged_at)}"
    )
    reason = clip(session.outcome_reason or "no reason given", REASON_CHARS, mrkdwn=True)
    status = {
        IncidentPhase.FAILED: "failed, not acknowledged yet",
        IncidentPhase.ACKNOWLEDGED: acknowledged,
        IncidentPhase.ROLLING_BACK: "Rolling back…",
        IncidentPhase.ROLLED_BACK: "Rolled back",
        IncidentPhase.ROLLBACK_FAILED: f"Rollback failed: {reason}",
        IncidentPhase.RESOLVED: (
            f"Resolved by {mention(incident.resolved_by)} {slack_date(incident.resolved_at)}"
        ),
        IncidentPhase.CLOSED: f"Deploy {session.state.label}"
        + (f": {reason}" if session.outcome_reason else ""),
    }[phase]
    lines = [f"*Status:* {status}"]
    if incident.is_acknowledged and phase is not IncidentPhase.ACKNOWLEDGED:
        lines.append(acknowledged)
    return lines


def _buttons(
    session: DeploySession, phase: IncidentPhase, rollback: Sequence[str]
) -> list[dict[str, Any]]:
    """The responder buttons the phase calls for, and only those the state allows."""
    sid, state = session.id, session.state

    def allowed(command: type[Any]) -> bool:
        return (state, command) in TRANSITIONS

    buttons = []
    if phase is IncidentPhase.FAILED and allowed(Acknowledge):
        buttons.append(button("Acknowledge", ActionId.ACKNOWLEDGE, sid))
    if phase in (IncidentPhase.FAILED, IncidentPhase.ACKNOWLEDGED, IncidentPhase.ROLLBACK_FAILED):
        if allowed(StartRollback):
            again = phase is IncidentPhase.ROLLBACK_FAILED
            buttons.append(_roll_back(sid, rollback, "Roll back again" if again else "Roll back"))
        step = failed_step(session) if state is S.FAILED else None
        if step is not None:  # a failed deploy step: retried, or rolled back (not resolved)
            buttons.append(button(f"Retry step {step}", ActionId.RETRY_STEP, pack(sid, step)))
        elif allowed(Resolve):
            buttons.append(button("Resolve", ActionId.RESOLVE, sid, "primary"))
    return buttons


def _roll_back(sid: int | None, rollback: Sequence[str], text: str) -> dict[str, Any]:
    targets = "\n".join(f"• {t}" for t in rollback) or "No rollback targets are configured."
    confirm = confirm_dialog(
        f"Roll back deploy #{sid}?", f"This runs:\n{targets}", "Roll back", danger=True
    )
    return button(text, ActionId.ROLL_BACK, sid, "danger", confirm)


def _facts(
    session: DeploySession,
    what: str,
    since: datetime,
    oncall: Sequence[str],
    session_link: str | None,
) -> JsonBlock:
    sid = session.id
    safe_link = session_link and not any(ch in session_link for ch in "<>| \n")
    where = f"<{session_link}|deploy #{sid}>" if safe_link else f"deploy #{sid}"
    paged = _mentions(oncall) or "_no on-call role configured_"
    who = f"Since {slack_date(since)} · {where} requested by {mention(session.requester)}"
    return _section(f"{what}\n{who}\nOn call: {paged}")


def _mentions(members: Sequence[str]) -> str:
    """Mentions of ``members``, as many as fit; never a mention cut in two."""
    kept: list[str] = []
    for i, member in enumerate(members):
        mention_ = notify(member)
        if len(" ".join([*kept, mention_])) > ONCALL_CHARS:
            return " ".join(kept) + f" and {len(members) - i} more"
        kept.append(mention_)
    return " ".join(kept)


def _header(text: str) -> JsonBlock:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(text, MAX_HEADER_TEXT), "emoji": True},
    }


def _section(text: str) -> JsonBlock:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}
