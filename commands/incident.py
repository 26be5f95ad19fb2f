"""Incident thread buttons: acknowledge, roll back, resolve."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot.domain.commands import Acknowledge, Resolve
from bot.rendering.ids import ActionId
from commands.deps import deps_of, finishing, parse_id, request_of, tell


def acknowledge(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
) -> None:
    session_id = parse_id(action.get("value") or "")  # before the ack: refused in its answer
    ack()
    deps = deps_of(context)
    deps.service.act(session_id, Acknowledge(), body["user"]["id"], request=request_of(context))


def roll_back(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    session_id = parse_id(action.get("value") or "")  # before the ack: refused in its answer
    ack()
    deps = deps_of(context)
    deps.rollbacks.request(session_id, body["user"]["id"], request=request_of(context))
    tell(respond, f":rewind: Rolling back deploy #{session_id}; progress follows here.")


def resolve(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
    """Resolve without rolling back; verification starts again (an effect of the event)."""
    session_id = parse_id(action.get("value") or "")  # before the ack: refused in its answer
    ack()
    deps = deps_of(context)
    deps.service.act(session_id, Resolve(), body["user"]["id"], request=request_of(context))


def register(app: App) -> None:
    app.action(ActionId.ACKNOWLEDGE)(finishing(acknowledge))
    app.action(ActionId.ROLL_BACK)(finishing(roll_back))
    app.action(ActionId.RESOLVE)(finishing(resolve))
