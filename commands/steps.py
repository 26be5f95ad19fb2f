"""Deploy step buttons: continue a pause, retry a failed step."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.app.deploy_steps import continue_pause
from bot.domain.steps import RetryStep
from bot.rendering.ids import ActionId
from commands.deps import deps_of, finishing, parse_id, parse_parts, request_of


def _step(action: dict[str, Any]) -> tuple[int, int]:
    session_id, step = parse_parts(action.get("value") or "", 2, "step button")
    return parse_id(session_id), parse_id(step, "step")


def continue_step(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
) -> None:
    session_id, step = _step(action)  # before the ack: a garbled value is refused in its answer
    ack()
    service = deps_of(context).service
    continue_pause(service, session_id, step, body["user"]["id"], request=request_of(context))


def retry_step(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext
) -> None:
    session_id, step = _step(action)
    ack()
    deps_of(context).service.act(
        session_id, RetryStep(step), body["user"]["id"], request=request_of(context)
    )


def register(app: App) -> None:
    app.action(ActionId.CONTINUE_STEP)(finishing(continue_step))
    app.action(ActionId.RETRY_STEP)(finishing(retry_step))
