"""The incident message: what failed, who is paged, and the buttons to act on it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain import DeploySession
from bot.rendering.checklist import hhmm, mention
from bot.rendering.limits import MAX_SECTION_TEXT, JsonBlock, clip, escape
from bot.slack_ids import ActionId


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
    paged = " ".join(_notify(m) for m in oncall) or "_no on-call role configured_"
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
                _button("Acknowledge", ActionId.ACKNOWLEDGE, sid),
                _button(
                    "Roll back",
                    ActionId.ROLL_BACK,
                    sid,
                    style="danger",
                    confirm={
                        "title": {"type": "plain_text", "text": f"Roll back deploy #{sid}?"},
                        "text": {"type": "plain_text", "text": clip(f"This runs:\n{targets}", 300)},
                        "confirm": {"type": "plain_text", "text": "Roll back"},
                        "deny": {"type": "plain_text", "text": "Cancel"},
                        "style": "danger",
                    },
                ),
                _button("Resolve", ActionId.RESOLVE, sid, style="primary"),
            ],
        }
    )
    return blocks


def incident_text(session: DeploySession, failure: Failure) -> str:
    return (
        f"Incident: {session.title} deploy #{session.id}: {failure.probe} failed: {failure.summary}"
    )


def _button(
    text: str,
    action_id: ActionId,
    sid: int | None,
    *,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id.value,
        "text": {"type": "plain_text", "text": text},
        "value": str(sid),
    }
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = confirm
    return button


def _notify(member: str) -> str:
    if member.startswith("@"):
        return member
    if member.startswith("S"):
        return f"<!subteam^{member}>"
    return f"<@{member}>"
