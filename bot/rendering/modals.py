"""Modals: skip a checklist item with a reason, abort a deploy with a reason."""

from __future__ import annotations

from typing import Any

from bot.domain import TRANSITIONS, DeploySession, ItemStatus
from bot.domain.checklist import ChecklistItem
from bot.domain.commands import Abort, SkipItem
from bot.domain.errors import NotFound
from bot.domain.inputs import REASON_MAX
from bot.rendering.checklist import STATUS_ICON, session_id
from bot.rendering.ids import UNSKIP, InputId, ViewId, pack
from bot.rendering.limits import MAX_OPTION_TEXT, MAX_SECTION_TEXT, MAX_SELECT_OPTIONS, clip
from bot.rendering.mrkdwn import to_plain

REASON_MAX_LENGTH = REASON_MAX
UNSKIP_GROUP = "Skipped: unskip"


def skip_modal(session: DeploySession, section_id: str) -> dict[str, Any]:
    """The modal to skip one of a section's open items (not done or skipped) with a reason.

    Lists at most 100 items (Slack's limit for a select) and says so when there are more.
    When nothing can be skipped (all settled, the section's gate is closed, the deploy no
    longer takes changes) it explains why and has no submit button.

    Raises:
        NotFound: the checklist has no section ``section_id``.
    """
    sid = session_id(session)
    section = session.checklist.section(section_id)
    if section is None:
        raise NotFound(f"Deploy #{sid} has no checklist section '{section_id}'.")
    metadata = pack(sid, section.id)
    where = f"*{clip(to_plain(section.title), 200, mrkdwn=True)}* of deploy #{sid}"
    if (session.state, SkipItem) not in TRANSITIONS:
        return _notice(
            ViewId.SKIP,
            metadata,
            "Skip an item",
            f"Deploy #{sid} is {session.state.label}: its checklist takes no more changes.",
        )
    missing = session.gate_missing(section.gate) if section.gate is not None else []
    if missing:
        waiting = clip("; ".join(missing), 2_000, mrkdwn=True)
        return _notice(
            ViewId.SKIP,
            metadata,
            "Skip an item",
            f"{where} is still closed. Waiting for: {waiting}.",
        )
    items = _section_items(session, section.id)
    open_items = [i for i in items if not session.progress(i.id).status.is_settled]
    skipped = [i for i in items if session.progress(i.id).status is ItemStatus.SKIPPED]
    if not open_items and not skipped:
        return _notice(
            ViewId.SKIP,
            metadata,
            "Skip an item",
            f"Every item in {where} is done: nothing is left to skip.",
        )
    shown_open = open_items[: MAX_SELECT_OPTIONS - min(len(skipped), MAX_SELECT_OPTIONS // 2)]
    shown_skipped = skipped[: MAX_SELECT_OPTIONS - len(shown_open)]
    intro = f"Skip an item in {where}. The reason goes into the deploy's audit log and report."
    if skipped:
        intro = (
            f"Skip an item in {where}, or unskip one that was skipped so it can be ticked "
            "again. The reason goes into the deploy's audit log and report."
        )
    hidden = len(open_items) + len(skipped) - len(shown_open) - len(shown_skipped)
    if hidden:
        intro += (
            f"\nShowing the first {len(shown_open) + len(shown_skipped)} of "
            f"{len(open_items) + len(skipped)} items; tick or skip some to reach the rest."
        )
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": InputId.SKIP_ITEM.value,
        "placeholder": _plain("Choose the item to skip" + (" or unskip" if skipped else "")),
    }
    if skipped:
        # Unskipping is its own, explicit choice: a tick never takes a skip back.
        groups = [("Skip", shown_open, False), (UNSKIP_GROUP, shown_skipped, True)]
        select["option_groups"] = [
            {"label": _plain(label), "options": [_item_option(session, i, unskip) for i in group]}
            for label, group, unskip in groups
            if group
        ]
    else:
        select["options"] = [_item_option(session, i, False) for i in shown_open]
    return {
        "type": "modal",
        "callback_id": ViewId.SKIP.value,
        "private_metadata": metadata,
        "title": _plain("Skip or unskip" if skipped else "Skip an item"),
        "submit": _plain("Save" if skipped else "Skip item"),
        "close": _plain("Cancel"),
        "blocks": [
            _section(intro),
            {
                "type": "input",
                "block_id": InputId.SKIP_ITEM.value,
                "label": _plain("Item"),
                "element": select,
            },
            _reason_input(InputId.SKIP_REASON, "Why is it skipped (or unskipped)?"),
        ],
    }


def _item_option(session: DeploySession, item: ChecklistItem, unskip: bool) -> dict[str, Any]:
    progress = session.progress(item.id)
    text = f"{STATUS_ICON[progress.status]} {item.id} {to_plain(item.text)}"
    return {
        "text": {"type": "plain_text", "text": clip(text, MAX_OPTION_TEXT)},
        "value": pack(UNSKIP, item.id) if unskip else item.id,
    }


def abort_modal(session: DeploySession) -> dict[str, Any]:
    """The modal asking why a deploy is aborted (private_metadata: the session id).

    If the session can no longer be aborted, the modal says so and has no submit button.
    """
    sid = session_id(session)
    if (session.state, Abort) not in TRANSITIONS:
        return _notice(
            ViewId.ABORT,
            str(sid),
            "Abort deploy",
            f"Deploy #{sid} is {session.state.label}: it can't be aborted any more.",
        )
    title = clip(session.title, 200, mrkdwn=True)
    env = clip(session.environment, 100, mrkdwn=True)
    return {
        "type": "modal",
        "callback_id": ViewId.ABORT.value,
        "private_metadata": str(sid),
        "title": _plain("Abort deploy"),
        "submit": _plain("Abort deploy"),
        "close": _plain("Keep going"),
        "blocks": [
            _section(
                f"Abort deploy #{sid} ({title})? The session closes and {env} is "
                "freed. The reason goes into the audit log and report."
            ),
            _reason_input(InputId.ABORT_REASON, "Why is it aborted?"),
        ],
    }


def notice_modal(text: str) -> dict[str, Any]:
    """A modal that only says ``text``: the answer to a submit deploybot could not take."""
    return {
        "type": "modal",
        "title": _plain("deploybot"),
        "close": _plain("Close"),
        "blocks": [_section(text)],
    }


def _section_items(session: DeploySession, section_id: str) -> list[ChecklistItem]:
    return [item for section, item in session.checklist.walk() if section.id == section_id]


def _notice(callback_id: ViewId, metadata: str, title: str, text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id.value,
        "private_metadata": metadata,
        "title": _plain(title),
        "close": _plain("Close"),
        "blocks": [_section(text)],
    }


def _reason_input(input_id: InputId, placeholder: str) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": input_id.value,
        "label": _plain("Reason"),
        "element": {
            "type": "plain_text_input",
            "action_id": input_id.value,
            "multiline": True,
            "max_length": REASON_MAX_LENGTH,
            "placeholder": _plain(placeholder),
        },
    }


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_TEXT)}}
