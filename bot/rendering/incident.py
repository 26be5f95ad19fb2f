"""The incident message: what failed, who is paged, and the buttons to act on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.domain import DeploySession
from bot.rendering.checklist import hhmm, mention
from bot.rendering.ids import ActionId
from bot.rendering.limits import MAX_SECTION_TEXT, JsonBlock, clip, escape
from bot.rendering.session import button, confirm_dialog


@dataclass(frozen=True)
class Failure:
    probe: str
    summary: str
    severity: str
    since: datetime


def incident_blocks(
    session: DeploySession,
    failure: Failure,
    *,
    oncall: list[str],
    rollback: list[str],
    session_link: str | None = None,
) -> list[JsonBlock]:
    """The first message of an incident thread, in the environment's incident channel.

    Args:
        oncall: Slack user IDs (or ``@handle``/``S…`` groups) to notify.
        rollback: one line per rollback target, shown in the roll back confirmation.
    """
    sid = session.id
    where = f"<{session_link}|deploy #{sid}>" if session_link else f"deploy #{sid}"
    paged = " ".join(notify(m) for m in oncall) or "_no on-call role configured_"
    what = f"*{escape(failure.probe)}* ({failure.severity}) failed: {escape(failure.summary)}"
    who = f"Since {hhmm(failure.since)} UTC · {where} requested by {mention(session.requester)}"
    blocks: list[JsonBlock] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": clip(f"🚨 {session.title}: {failure.probe} failed", 150),
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": clip(
                    f"{what}\n{who}\nOn call: {paged}",
                    MAX_SECTION_TEXT,
                ),
            },
        },
    ]
    targets = "\n".join(f"• {t}" for t in rollback) or "No rollback targets are configured."
    blocks.append(
        {
            "type": "actions",
            "block_id": "incident",
            "elements": [
                button("Acknowledge", ActionId.ACKNOWLEDGE, sid),
                button(
                    "Roll back",
                    ActionId.ROLL_BACK,
                    sid,
                    "danger",
                    confirm_dialog(
                        f"Roll back deploy #{sid}?",
                        f"This runs:\n{targets}",
                        "Roll back",
                        danger=True,
                    ),
                ),
                button("Resolve", ActionId.RESOLVE, sid, "primary"),
            ],
        }
    )
    return blocks


def incident_text(session: DeploySession, failure: Failure) -> str:
    return (
        f"Incident: {session.title} deploy #{session.id}: {failure.probe} failed: {failure.summary}"
    )


def notify(member: str) -> str:
    """A mention for a role member: a user ID, a user-group ID or an ``@handle``."""
    if member.startswith("@"):
        return member
    if member.startswith("S"):
        return f"<!subteam^{member}>"
    return f"<@{member}>"
