"""The App Home tab and the queue listings: pure functions from what is to Block Kit.

:class:`HomeFacts` is what a person's Home shows, gathered by :mod:`bot.app.home`; the
sign-off buttons are the summary's own (same action and value), so a click here does
exactly what a click on the summary does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain import DeploySession
from bot.domain.policy import SignOffRule
from bot.domain.queue import QueueEntry, QueueState
from bot.rendering.checklist import mention
from bot.rendering.ids import ActionId, pack
from bot.rendering.limits import MAX_VIEW_BLOCKS, JsonBlock, clip
from bot.rendering.session import button, context_block, header_block, section_block, state_label
from bot.rendering.times import ago

PER_LIST = 10  # sessions per Home list: the view's 100 blocks hold every list


@dataclass(frozen=True)
class HomeFacts:
    """What one person's App Home shows."""

    user_id: str
    mine: Sequence[DeploySession] = ()
    to_sign: Sequence[tuple[DeploySession, Sequence[SignOffRule]]] = ()
    incidents: Sequence[DeploySession] = ()
    locks: Sequence[str] = ()  # each described already ("prod is locked by … since …")
    queue: Sequence[QueueEntry] = ()
    freezes: Sequence[str] = ()  # each described already, current ones first
    links: dict[int, str] = field(default_factory=dict)  # session id: link to its summary


def _title(session: DeploySession, links: dict[int, str]) -> str:
    link = links.get(session.id or 0)
    name = f"#{session.id}"
    shown = f"<{link}|{name}>" if link and not any(c in link for c in "<>| ") else name
    return f"*{shown}* {clip(session.title, 100, mrkdwn=True)}"


def _more(blocks: list[JsonBlock], shown: int, total: int) -> None:
    if total > shown:
        blocks.append(context_block(f"…and {total - shown} more: `/deploy list`."))


def queue_lines(entries: Sequence[QueueEntry]) -> list[str]:
    """One line per place, by lane, in order: "prod api: 1. @ana (turn until 14:05 UTC)"."""
    lines = []
    lanes: dict[tuple[str, str], list[QueueEntry]] = {}
    for entry in entries:
        lanes.setdefault(entry.lane, []).append(entry)
    for lane in lanes.values():
        for n, entry in enumerate(lane, start=1):
            line = f"*{clip(entry.title, 100, mrkdwn=True)}* {n}. {mention(entry.user_id)}"
            if entry.state is QueueState.CALLED and entry.turn_until is not None:
                line += f" (their turn, until {entry.turn_until.strftime('%H:%M UTC')})"
            lines.append(line)
    return lines


def queue_blocks(entries: Sequence[QueueEntry], environment: str | None = None) -> list[JsonBlock]:
    """The ``/deploy queue <env>`` reply (and the queue part of ``/deploy list``)."""
    where = f" for {environment}" if environment else ""
    if not entries:
        return [section_block(f"Nobody is queued{where}.")]
    lines = queue_lines(entries)
    return [
        header_block(f"Deploy queue{where} ({len(entries)})"),
        section_block("\n".join(lines[:40])),
        context_block("`/deploy queue leave <env>` leaves a queue."),
    ]


def home_view(facts: HomeFacts, *, now: datetime) -> dict[str, Any]:
    """The ``views.publish`` view of ``facts.user_id``'s App Home."""
    blocks: list[JsonBlock] = [header_block("deploybot")]
    blocks.append(section_block("*Your open deploys*"))
    for session in facts.mine[:PER_LIST]:
        blocks.append(
            section_block(
                f"{_title(session, facts.links)} · {state_label(session.state)}"
                f" · opened {ago(session.opened_at, now)}"
            )
        )
    if not facts.mine:
        blocks.append(context_block("None: `/deploy start <env>` opens one."))
    _more(blocks, PER_LIST, len(facts.mine))

    blocks.append(section_block("*Waiting for your sign-off*"))
    for session, rules in facts.to_sign[:PER_LIST]:
        blocks.append(
            section_block(
                f"{_title(session, facts.links)} requested by {mention(session.requester)}"
            )
        )
        sid = session.id
        buttons = [
            button(f"Sign off as {rule.role}", ActionId.SIGN_OFF, pack(sid, rule.key))
            for rule in rules[:5]
        ]
        blocks.append({"type": "actions", "block_id": f"home_sign|{sid}", "elements": buttons})
    if not facts.to_sign:
        blocks.append(context_block("Nothing waits for you."))
    _more(blocks, PER_LIST, len(facts.to_sign))

    blocks.append(section_block("*Open incidents where you are on call*"))
    for session in facts.incidents[:PER_LIST]:
        reason = session.outcome_reason or state_label(session.state)
        blocks.append(section_block(f":fire: {_title(session, facts.links)} · {reason}"))
    if not facts.incidents:
        blocks.append(context_block("None."))

    for heading, lines in (
        ("Locks", list(facts.locks)),
        ("Deploy queue", queue_lines(facts.queue)),
        ("Change freezes", list(facts.freezes)),
    ):
        blocks.append(section_block(f"*{heading}*"))
        blocks.append(section_block("\n".join(lines[:30])) if lines else context_block("None."))
    return {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}
