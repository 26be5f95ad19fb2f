"""Checklist interactions: tick and untick items, skip one (or take a skip back) with a reason."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain.commands import Command, SkipItem, TickItem, UnskipItem, UntickItem
from bot.domain.errors import DeployError
from bot.domain.inputs import free_text
from bot.rendering.ids import SEPARATOR, UNSKIP, ActionId, InputId, ViewId
from bot.rendering.limits import validate_view
from bot.rendering.modals import skip_modal
from commands.deps import (
    deps_of,
    finishing,
    parse_id,
    parse_parts,
    request_of,
    tell_where_clicked,
    typed,
)


def tick(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    client: WebClient,
    respond: Respond,
    context: BoltContext,
) -> None:
    """What a click changes is the difference between the element as the clicker saw it
    (its ``initial_options`` in the clicked message) and its ``selected_options``: a stale
    message or someone else's concurrent tick is never undone by this click.

    A refused click is redrawn as it was (by the bus) and the clicker is told why, in the
    checklist's thread where they clicked."""
    _, sid, shown = parse_parts(action.get("block_id") or "", 3, "checkbox")
    session_id = parse_id(sid)  # before the ack: a garbled click is refused in its answer
    ack()
    deps = deps_of(context)
    items = set(shown.split(","))
    seen = shown_ticked(body, action["block_id"]) & items
    selected = {o["value"] for o in action.get("selected_options") or []} & items
    commands: list[Command] = [TickItem(i) for i in sorted(selected - seen)]
    commands += [UntickItem(i) for i in sorted(seen - selected)]
    if not commands:
        deps.service.get(session_id)  # nothing to change; a click on no deploy still hears so
        return
    actor = deps.service.actor(body["user"]["id"])
    try:
        deps.service.handle(session_id, commands, actor, request=request_of(context))
    except DeployError as refused:
        changes = [f"tick {i}" for i in sorted(selected - seen)]
        changes += [f"untick {i}" for i in sorted(seen - selected)]
        text = f":warning: Not changed ({', '.join(changes)}): {refused}"
        tell_where_clicked(client, body, respond, text)


def shown_ticked(body: dict[str, Any], block_id: str) -> set[str]:
    """The item ids the clicked message showed ticked in the block ``block_id``."""
    for block in _dicts((body.get("message") or {}).get("blocks")):
        if block.get("block_id") != block_id:
            continue
        for element in _dicts(block.get("elements") or [block.get("accessory")]):
            if element.get("type") == "checkboxes":
                return {
                    o["value"]
                    for o in _dicts(element.get("initial_options"))
                    if isinstance(o.get("value"), str)
                }
    return set()


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects in a list from the payload (a garbled message shows nothing ticked)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def open_skip(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    session_id, section_id = parse_parts(action.get("value") or "", 2, "skip button")
    parsed = parse_id(session_id)
    ack()
    view = skip_modal(deps_of(context).service.get(parsed), section_id)
    validate_view(view)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def submit_skip(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
    item = typed(view, InputId.SKIP_ITEM, "selected_option")
    if not item:
        ack(response_action="errors", errors={InputId.SKIP_ITEM: "Pick the item to skip."})
        return
    deps = deps_of(context)
    kind, _, item_id = item.rpartition(SEPARATOR)
    try:
        reason = free_text(typed(view, InputId.SKIP_REASON))
        session_id, _ = parse_parts(view.get("private_metadata") or "", 2, "form")
        command: Command = (
            UnskipItem(item_id, reason) if kind == UNSKIP else SkipItem(item_id, reason)
        )
        deps.service.act(
            parse_id(session_id), command, body["user"]["id"], request=request_of(context)
        )
    except DeployError as refused:
        # Shown inline in the modal, which stays open so nothing typed is lost.
        ack(response_action="errors", errors={InputId.SKIP_REASON: str(refused)[:150]})
        return
    ack()


def register(app: App) -> None:
    app.action(ActionId.TICK)(finishing(tick))
    app.action(ActionId.SKIP)(finishing(open_skip))
    app.view(ViewId.SKIP)(finishing(submit_skip))
