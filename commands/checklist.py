"""Checklist interactions: tick and untick items, skip one (or take a skip back) with a reason."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain.commands import Command, SkipItem, TickItem, UnskipItem, UntickItem
from bot.domain.errors import DeployError
from bot.rendering.ids import SEPARATOR, UNSKIP, ActionId, InputId, ViewId, unpack
from bot.rendering.limits import validate_view
from bot.rendering.modals import skip_modal
from commands.deps import deps_of, finishing, parse_id, request_of, tell_where_clicked


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
    ack()
    deps = deps_of(context)
    _, sid, shown = unpack(action["block_id"])
    items = set(shown.split(","))
    seen = shown_ticked(body, action["block_id"]) & items
    selected = {o["value"] for o in action.get("selected_options") or []} & items
    commands: list[Command] = [TickItem(i) for i in sorted(selected - seen)]
    commands += [UntickItem(i) for i in sorted(seen - selected)]
    if not commands:
        return
    actor = deps.service.actor(body["user"]["id"])
    try:
        deps.service.handle(parse_id(sid), commands, actor, request=request_of(context))
    except DeployError as refused:
        changes = [f"tick {i}" for i in sorted(selected - seen)]
        changes += [f"untick {i}" for i in sorted(seen - selected)]
        text = f":warning: Not changed ({', '.join(changes)}): {refused}"
        tell_where_clicked(client, body, respond, text)


def shown_ticked(body: dict[str, Any], block_id: str) -> set[str]:
    """The item ids the clicked message showed ticked in the block ``block_id``."""
    for block in (body.get("message") or {}).get("blocks") or []:
        if block.get("block_id") != block_id:
            continue
        for element in block.get("elements") or [block.get("accessory") or {}]:
            if element.get("type") == "checkboxes":
                return {o["value"] for o in element.get("initial_options") or []}
    return set()


def open_skip(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    ack()
    session_id, section_id = unpack(action["value"])
    view = skip_modal(deps_of(context).service.get(parse_id(session_id)), section_id)
    validate_view(view)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def submit_skip(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
    values = view["state"]["values"]
    item = values[InputId.SKIP_ITEM][InputId.SKIP_ITEM].get("selected_option") or {}
    reason = (values[InputId.SKIP_REASON][InputId.SKIP_REASON].get("value") or "").strip()
    session_id, _ = unpack(view["private_metadata"])
    if not item:
        ack(response_action="errors", errors={InputId.SKIP_ITEM: "Pick the item to skip."})
        return
    deps = deps_of(context)
    kind, _, item_id = str(item["value"]).rpartition(SEPARATOR)
    command: Command = UnskipItem(item_id, reason) if kind == UNSKIP else SkipItem(item_id, reason)
    try:
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
