"""Checklist interactions: tick and untick items, skip one with a reason."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain import ItemStatus
from bot.domain.commands import SkipItem, TickItem, UntickItem
from bot.domain.errors import DeployError
from bot.rendering.ids import ActionId, InputId, ViewId, unpack
from bot.rendering.limits import validate_view
from bot.rendering.modals import skip_modal
from commands.deps import Deps, replying_errors


def register(app: App, deps: Deps) -> None:
    def handle_tick(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        user = body["user"]["id"]

        def work() -> None:
            _, sid, shown = unpack(action["block_id"])
            session_id, items = int(sid), set(shown.split(","))
            selected = {o["value"] for o in action.get("selected_options") or []}
            # Slack sends the element's whole selection: what changed is the difference
            # between it and the items' current state, so a stale or repeated click is harmless.
            session = deps.service.get(session_id)
            done = {i for i in items if session.progress(i).status is ItemStatus.DONE}
            try:
                for item_id in sorted(selected - done):
                    deps.service.act(session_id, TickItem(item_id), user)
                for item_id in sorted((items - selected) & done):
                    deps.service.act(session_id, UntickItem(item_id), user)
            finally:
                # Refused or not, redraw: a refused tick must not stay ticked on screen.
                deps.publisher.changed(session_id)

        replying_errors(respond, work)

    def open_skip(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond
    ) -> None:
        ack()

        def work() -> None:
            session_id, section_id = unpack(action["value"])
            view = skip_modal(deps.service.get(int(session_id)), section_id)
            validate_view(view)
            client.views_open(trigger_id=body["trigger_id"], view=view)

        replying_errors(respond, work)

    def submit_skip(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = view["state"]["values"]
        item = values[InputId.SKIP_ITEM][InputId.SKIP_ITEM].get("selected_option") or {}
        reason = (values[InputId.SKIP_REASON][InputId.SKIP_REASON].get("value") or "").strip()
        session_id, _ = unpack(view["private_metadata"])
        if not item:
            ack(response_action="errors", errors={InputId.SKIP_ITEM: "Pick the item to skip."})
            return
        try:
            deps.service.act(int(session_id), SkipItem(item["value"], reason), body["user"]["id"])
        except DeployError as refused:
            # Shown inline in the modal, which stays open so nothing typed is lost.
            ack(response_action="errors", errors={InputId.SKIP_REASON: str(refused)[:150]})
            return
        ack()
        deps.publisher.changed(int(session_id))

    app.action(ActionId.TICK)(handle_tick)
    app.action(ActionId.SKIP)(open_skip)
    app.view(ViewId.SKIP)(submit_skip)
