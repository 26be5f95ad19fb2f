"""A session's checklist as Slack messages in the summary's thread: one per section (or part).

How items are split into messages depends on the checklist alone, never on progress: every
chunk and part is sized for the worst its items can render to (all done, all failed with a
long reason), so a message's ``purpose`` keeps showing the same items as the session moves
and the bot can ``chat.update`` it in place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bot.domain import TRANSITIONS, DeploySession, ItemProgress, ItemStatus
from bot.domain.checklist import ChecklistItem, Section
from bot.domain.commands import SkipItem, TickItem
from bot.domain.transitions import SYSTEM
from bot.rendering.ids import TICK_BLOCK, ActionId, pack
from bot.rendering.limits import (
    MAX_BLOCK_ID,
    MAX_CHECKBOX_OPTIONS,
    MAX_CONTEXT_ELEMENTS,
    MAX_CONTEXT_TEXT,
    MAX_HEADER_TEXT,
    MAX_MESSAGE_BLOCKS,
    MAX_MESSAGE_JSON,
    MAX_OPTION_TEXT,
    MAX_SECTION_TEXT,
    JsonBlock,
    clip,
    escape,
    json_len,
    json_size,
    width,
)
from bot.rendering.mrkdwn import split_mrkdwn, to_plain
from bot.rendering.times import clock

STATUS_ICON = {
    ItemStatus.PENDING: "⬜",
    ItemStatus.DONE: "✅",
    ItemStatus.SKIPPED: "⏭",
    ItemStatus.RUNNING: "⏳",
    ItemStatus.FAILED: "❌",
}
INDENT = "\u2003"  # em space: Slack keeps it, unlike leading spaces
HEADER_TEXT_JSON = 300
HEADER_SECTION_JSON = 700
FULL_TEXT_JSON = 1_500  # the rest of an item's text beside its chunk; longer texts are cut
STATUS_JSON = 350  # one status line ("❌ 1.4 probe failed: ..."), when it has room
CHUNK_STATUS_JSON = 1_500  # all status lines of a chunk (each with a date): reasons share it
REASON_CHARS = 200
MESSAGE_MARGIN = 100  # slack in the worst-case arithmetic (which is a bound already)

# JSON skeletons of a chunk's blocks (empty texts), measured once.
_ACTIONS_SKELETON = json_size(
    {
        "type": "actions",
        "block_id": "",
        "elements": [
            {
                "type": "checkboxes",
                "action_id": ActionId.TICK.value,
                "options": [],
                "initial_options": [],
            }
        ],
    }
)
_CONTEXT_SKELETON = json_size({"type": "context", "elements": []}) + 2
_ELEMENT_SKELETON = json_size({"type": "mrkdwn", "text": ""}) + 2
HEADER_BUDGET = (  # both header blocks at the clips above, with separators
    json_size({"type": "header", "text": {"type": "plain_text", "text": "", "emoji": True}})
    + json_size({"type": "section", "text": {"type": "mrkdwn", "text": ""}})
    + HEADER_TEXT_JSON
    + HEADER_SECTION_JSON
    + 4
)


@dataclass(frozen=True)
class ChecklistMessage:
    """One message of the checklist thread.

    Attributes:
        purpose: ``section:<section_id>`` or ``section:<section_id>:<part>`` (part 2, 3...);
            stable for a given checklist, so the bot can update the same message later.
        text: The notification fallback text.
        blocks: The Block Kit blocks.
    """

    purpose: str
    text: str
    blocks: list[JsonBlock]


@dataclass(frozen=True)
class _Row:
    """An item as its checkbox shows it, and the most JSON it can cost in a message."""

    item: ChecklistItem
    option: dict[str, Any]
    full_text: str | None  # the rest of the text, when the option text had to be cut
    cost: int


def checklist_messages(
    session: DeploySession, links: Mapping[str, str] | None = None
) -> list[ChecklistMessage]:
    """Render the checklist: one message per section, or per part of a large section.

    Interactive (checkboxes and a skip button) while the session's state lets people tick
    items; a read-only list otherwise (closed, rolling back). ``links`` maps an item's id to
    a dashboard URL its probe's line links to (once the probe has run).
    """
    sid = session_id(session)
    messages = []
    for section in session.checklist.sections:
        parts = _plan(sid, section)
        for number, chunks in enumerate(parts, start=1):
            purpose = f"section:{section.id}" + (f":{number}" if number > 1 else "")
            blocks = _header(session, section, number, len(parts), chunks)
            for rows in chunks:
                blocks += _chunk(session, sid, rows, links or {})
            if (session.state, SkipItem) in TRANSITIONS and chunks:
                blocks.append(_skip_block(sid, section))
            settled, total = session.section_counts(section)
            part = f" (part {number}/{len(parts)})" if len(parts) > 1 else ""
            text = f"{escape(to_plain(section.title))}{part}: {settled}/{total} done"
            messages.append(ChecklistMessage(purpose, clip(text, 300), blocks))
    return messages


def checklist_purposes(session: DeploySession) -> list[str]:
    """The purposes of :func:`checklist_messages`, in order, without rendering them."""
    sid = session_id(session)
    return [
        f"section:{section.id}" + (f":{number}" if number > 1 else "")
        for section in session.checklist.sections
        for number in range(1, len(_plan(sid, section)) + 1)
    ]


def session_id(session: DeploySession) -> int:
    """The session's id, which every button and block id carries.

    Raises:
        ValueError: the session was not saved yet.
    """
    if session.id is None:
        raise ValueError("render a session after it is saved: it has no id yet")
    return session.id


def channel_link(channel: str) -> str:
    """``<#C123>`` for a channel id (Slack links it), the ``#name`` as written otherwise
    (``<##name>`` is no link)."""
    return escape(channel) if channel.startswith("#") else f"<#{channel}>"


def mention(user: str | None) -> str:
    """``<@U123>`` for a Slack user id, "deploybot" for the bot, escaped text otherwise."""
    if user == SYSTEM.user_id:
        return "deploybot"
    if user and user[:1] in "UW" and user.isalnum() and user.isupper() and len(user) <= 30:
        return f"<@{user}>"
    return escape(user or "someone")


def status_line(
    item: ChecklistItem,
    progress: ItemProgress,
    *,
    json_limit: int = STATUS_JSON,
    label: str | None = None,
    link: str | None = None,
) -> str:
    """One line on an item that is not pending: its state, who changed it and when, and why.

    For example "✅ 1.2 <@U0X> 14:02" or "⏭ 1.3 skipped by <@U0Y>: not applicable · 14:05".
    The reason (skip reason, probe summary) is cut so the line stays within ``json_limit``
    JSON characters, not counting ``label``: the item as its checkbox would show it, which
    stands for the id (a skipped item has no checkbox, so its line shows what it is).
    A probe's line ends with ``link`` to its dashboard when one is given and fits whole.
    """
    status, icon, when = progress.status, STATUS_ICON[progress.status], clock(progress.at)
    ref = clip(item.id, 40, mrkdwn=True) if label is None else label
    if label is not None:
        json_limit += json_len(label)
    reason, tail = progress.reason or "", f" · {when}"
    if status is ItemStatus.DONE and progress.by == SYSTEM.user_id:
        head = f"{icon} {ref} probe passed" + (": " if reason else "")
    elif status is ItemStatus.DONE:
        head, tail = f"{icon} {ref} {mention(progress.by)} {when}", ""
    elif status is ItemStatus.SKIPPED:
        head, reason = f"{icon} {ref} · skipped by {mention(progress.by)}: ", reason or "no reason"
    elif status is ItemStatus.FAILED:
        head, reason = f"{icon} {ref} probe failed: ", reason or "no detail"
        tail = (f" ({progress.severity.value})" if progress.severity else "") + tail
    else:
        head, reason = f"{icon} {ref} {status.value}", ""
    safe = link and not set("<>| ") & set(link)
    shown_link = f" · <{link.replace('&', '&amp;')}|dashboard>" if link and safe else ""
    probed = progress.by == SYSTEM.user_id and status in (ItemStatus.DONE, ItemStatus.FAILED)
    if probed and shown_link and json_len(head + shown_link + tail) + 6 <= json_limit // 2:
        tail = shown_link + tail  # never cut: a link cut in two is no link
    if json_len(head) + json_len(tail) + 6 > json_limit:
        tail = tail.replace(f" · {when}", "").replace(when, "")  # never cut a date in two
    room = json_limit - json_len(head) - json_len(tail)
    if reason:
        reason = clip(reason, REASON_CHARS, json_limit=max(room, 6), mrkdwn=True)
    line = head + reason + tail
    if width(line) <= MAX_CONTEXT_TEXT and json_len(line) <= json_limit:
        return line
    return clip(line, MAX_CONTEXT_TEXT, json_limit=json_limit)


# Planning: which items go in which chunk and part, from the checklist alone.


def _plan(sid: int, section: Section) -> list[list[list[_Row]]]:
    rows = [_row(item, depth) for item, depth in _walk(section.items, 0)]
    chunks: list[list[_Row]] = []
    for row in rows:
        if not chunks or not _chunk_takes(sid, chunks[-1], row):
            chunks.append([])
        chunks[-1].append(row)
    budget = MAX_MESSAGE_JSON - MESSAGE_MARGIN - HEADER_BUDGET - _skip_size(sid, section)
    room_blocks = MAX_MESSAGE_BLOCKS - 3  # header, progress, skip button
    parts: list[list[list[_Row]]] = [[]]
    used = 0
    for chunk in chunks:
        cost = _chunk_cost(sid, chunk)
        if parts[-1] and (used + cost > budget or 3 * (len(parts[-1]) + 1) > room_blocks):
            parts.append([])
            used = 0
        parts[-1].append(chunk)
        used += cost
    return parts


def _walk(items: tuple[ChecklistItem, ...], depth: int) -> Iterator[tuple[ChecklistItem, int]]:
    for item in items:
        yield item, depth
        yield from _walk(item.children, depth + 1)


def _row(item: ChecklistItem, depth: int) -> _Row:
    indent = (INDENT * (depth - 1) + "↳ ") if depth else ""
    prefix = f"{indent}*{escape(item.id)}* "
    ref = f"*{escape(item.id)}* "
    # Cut between tokens; what does not fit goes on in the chunk's context, once.
    shown, rest = split_mrkdwn(
        item.text,
        max(MAX_OPTION_TEXT - width(prefix), 10),
        rest_limit=MAX_CONTEXT_TEXT - width(ref),
        rest_json_limit=FULL_TEXT_JSON - json_len(ref),
    )
    option = {"text": {"type": "mrkdwn", "text": prefix + shown}, "value": item.id}
    full = ref + rest if rest is not None else None
    # Worst case: the option twice (options and initial_options) and the full text in an
    # element of its own; status lines are bounded per chunk (see _chunk_cost).
    cost = 2 * (json_size(option) + 2)
    if full is not None:
        cost += json_len(full) + 2 + _ELEMENT_SKELETON
    return _Row(item, option, full, cost)


def _tick_block_id(sid: int, rows: list[_Row]) -> str:
    return pack(TICK_BLOCK, sid, ",".join(r.item.id for r in rows))


def _chunk_takes(sid: int, chunk: list[_Row], row: _Row) -> bool:
    return len(chunk) < MAX_CHECKBOX_OPTIONS and len(_tick_block_id(sid, [*chunk, row])) <= (
        MAX_BLOCK_ID
    )


def _chunk_cost(sid: int, rows: list[_Row]) -> int:
    blocks = _ACTIONS_SKELETON + json_len(_tick_block_id(sid, rows)) + 2
    # Status lines fit one element; each full text may need one more. At most 11 elements
    # make two context blocks.
    contexts = 2 * _CONTEXT_SKELETON + CHUNK_STATUS_JSON + _ELEMENT_SKELETON
    return blocks + contexts + sum(r.cost for r in rows)


def _skip_size(sid: int, section: Section) -> int:
    return json_size(_skip_block(sid, section)) + 2


# Rendering


def _header(
    session: DeploySession, section: Section, number: int, parts: int, chunks: list[list[_Row]]
) -> list[JsonBlock]:
    suffix = f" (part {number}/{parts})" if parts > 1 else ""
    title = clip(
        to_plain(section.title).strip() or section.id,
        MAX_HEADER_TEXT - len(suffix),
        json_limit=HEADER_TEXT_JSON - len(suffix),
    )
    settled, total = session.section_counts(section)
    lines = [f"*{settled}/{total}* done" if total else "No items in this section."]
    if parts > 1 and chunks:
        first, last = chunks[0][0].item.id, chunks[-1][-1].item.id
        lines[0] += f" · this part: items {escape(first)} to {escape(last)}"
    if section.gate is not None:
        missing = session.gate_missing(section.gate)
        lines.append(
            "🔒 Closed until: " + escape("; ".join(missing)) if missing else "🔓 Gate passed"
        )
    if (session.state, TickItem) not in TRANSITIONS:
        lines.append(f"Read-only: this deploy is {session.state.label}.")
    return [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": title + suffix,
                "emoji": True,
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": clip("\n".join(lines), MAX_SECTION_TEXT, json_limit=HEADER_SECTION_JSON),
            },
        },
    ]


def _chunk(
    session: DeploySession, sid: int, rows: list[_Row], links: Mapping[str, str]
) -> list[JsonBlock]:
    progress = [session.progress(r.item.id) for r in rows]
    blocks: list[JsonBlock] = []
    interactive = (session.state, TickItem) in TRANSITIONS
    if interactive:
        # A skipped item is no checkbox: an empty box would read "to do", and ticking it
        # would turn "skipped" into "done" unseen. Its line below says so; unskipping is
        # done in the skip modal. The block id keeps every item, so it never changes.
        element: dict[str, Any] = {
            "type": "checkboxes",
            "action_id": ActionId.TICK.value,
            "options": [
                r.option
                for r, p in zip(rows, progress, strict=True)
                if p.status is not ItemStatus.SKIPPED
            ],
        }
        done = [
            r.option for r, p in zip(rows, progress, strict=True) if p.status is ItemStatus.DONE
        ]
        if done:
            element["initial_options"] = done
        if element["options"]:
            block_id = _tick_block_id(sid, rows)
            blocks = [{"type": "actions", "block_id": block_id, "elements": [element]}]
    else:
        lines = [
            f"{STATUS_ICON[p.status]} {r.option['text']['text']}"
            for r, p in zip(rows, progress, strict=True)
        ]
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]
    changed = [
        (r, p) for r, p in zip(rows, progress, strict=True) if p.status is not ItemStatus.PENDING
    ]
    # The chunk's status lines share CHUNK_STATUS_JSON (2 for each joining newline).
    share = min(STATUS_JSON, CHUNK_STATUS_JSON // max(len(changed), 1) - 2)
    notes = [
        status_line(
            r.item,
            p,
            json_limit=share,
            label=r.option["text"]["text"]
            if interactive and p.status is ItemStatus.SKIPPED
            else None,
            link=links.get(r.item.id),
        )
        for r, p in changed
    ]
    notes += [r.full_text for r in rows if r.full_text is not None]
    return blocks + context_blocks(notes)


def unasked_signoffs(session: DeploySession, shown: int = 3) -> str | None:
    """One short line naming the checklist's sign-off lines this session does not ask for.

    The runbook's "QA Lead: ____" lines are no items; when the environment does not require
    the role, nobody is asked to sign it, and the summary says so rather than drop it.
    """
    lines = session.checklist.signoffs_not_in({rule.key for rule in session.policy.signoffs})
    if not lines:
        return None
    named = [f"{s.role} (line {s.line})" if s.line else s.role for s in lines[:shown]]
    more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
    text = f"⚠️ Checklist sign-offs not asked for here: {', '.join(named)}{more}"
    return clip(text, 300, json_limit=600, mrkdwn=True)


def context_blocks(lines: list[str]) -> list[JsonBlock]:
    """Lines packed into context elements of at most 3000 characters, ten per block."""
    texts: list[str] = []
    for line in lines:
        if texts and width(texts[-1]) + 1 + width(line) <= MAX_CONTEXT_TEXT:
            texts[-1] += "\n" + line
        else:
            texts.append(line)
    elements = [{"type": "mrkdwn", "text": t} for t in texts]
    return [
        {"type": "context", "elements": elements[i : i + MAX_CONTEXT_ELEMENTS]}
        for i in range(0, len(elements), MAX_CONTEXT_ELEMENTS)
    ]


def _skip_block(sid: int, section: Section) -> JsonBlock:
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": ActionId.SKIP.value,
                "text": {"type": "plain_text", "text": "Skip an item…"},
                "value": pack(sid, section.id),
            }
        ],
    }
