"""Incident thread buttons: acknowledge, roll back, resolve."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.domain.commands import Acknowledge, Resolve
from bot.rendering.ids import ActionId
from commands.deps import Deps, in_background, replying_errors, tell


def register(app: App, deps: Deps) -> None:
    def handle_acknowledge(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        user, session_id = body["user"]["id"], int(action["value"])

        def work() -> None:
            outcome = deps.service.act(session_id, Acknowledge(), user)
            deps.incidents.acknowledged(outcome.session, user)

        replying_errors(respond, work)

    def handle_roll_back(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        user, session_id = body["user"]["id"], int(action["value"])

        def work() -> None:
            deps.rollbacks.request(session_id, user)
            deps.kick_scheduler()  # the leader runs the steps; start it now, not at next sync
            tell(respond, f":rewind: Rolling back deploy #{session_id}; progress follows here.")

        replying_errors(respond, work)

    def handle_resolve(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        user, session_id = body["user"]["id"], int(action["value"])

        def work() -> None:
            outcome = deps.service.act(session_id, Resolve(), user)
            deps.incidents.resolved(outcome.session, user)
            deps.publisher.changed(session_id)
            in_background(deps, respond, lambda: verify(session_id))

        replying_errors(respond, work)

    def verify(session_id: int) -> None:
        deps.probes.run(session_id, why="verification")

    app.action(ActionId.ACKNOWLEDGE)(handle_acknowledge)
    app.action(ActionId.ROLL_BACK)(handle_roll_back)
    app.action(ActionId.RESOLVE)(handle_resolve)
