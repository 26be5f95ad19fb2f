"""Session buttons: sign off, start and finish the deployment, complete, run probes, abort."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.app.deploy_steps import abort_deploy
from bot.domain.commands import Complete, FinishDeployment, SignOff, StartDeployment
from bot.domain.errors import DeployError
from bot.domain.inputs import free_text
from bot.rendering.ids import ActionId, InputId, ViewId
from bot.rendering.limits import validate_view
from bot.rendering.modals import abort_modal
from commands.deploy import run_probes
from commands.deps import deps_of, finishing, parse_id, parse_parts, request_of, typed

SIMPLE: dict[str, type[StartDeployment] | type[FinishDeployment] | type[Complete]] = {
    ActionId.START_DEPLOYMENT: StartDeployment,
    ActionId.FINISH_DEPLOYMENT: FinishDeployment,
    ActionId.COMPLETE: Complete,
}


def sign_off(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
    session_id, key = parse_parts(action.get("value") or "", 2, "sign-off button")
    parsed = parse_id(session_id)  # before the ack: a garbled value is refused in its answer
    ack()
    deps_of(context).service.act(
        parsed, SignOff(key), body["user"]["id"], request=request_of(context)
    )


def simple(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
    """Start deployment, deployed (verification follows as an effect), complete."""
    session_id = parse_id(action.get("value") or "")
    ack()
    command = SIMPLE[action["action_id"]]()
    deps = deps_of(context)
    deps.service.act(session_id, command, body["user"]["id"], request=request_of(context))


def probes(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    session_id = parse_id(action.get("value") or "")
    ack()
    run_probes(
        deps_of(context),
        session_id,
        body["user"]["id"],
        request_of(context),
        body.get("response_url"),
        respond,
    )


def open_abort(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    session_id = parse_id(action.get("value") or "")
    ack()
    view = abort_modal(deps_of(context).service.get(session_id))
    validate_view(view)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def submit_abort(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    try:
        reason = free_text(typed(view, InputId.ABORT_REASON))
        session_id = parse_id(view.get("private_metadata") or "")
        abort_deploy(
            deps_of(context).service,
            session_id,
            reason,
            body["user"]["id"],
            request=request_of(context),
        )
    except DeployError as refused:
        ack(response_action="errors", errors={InputId.ABORT_REASON: str(refused)[:150]})
        return
    ack()


def register(app: App) -> None:
    app.action(ActionId.SIGN_OFF)(finishing(sign_off))
    for action_id in SIMPLE:
        app.action(action_id)(finishing(simple))
    app.action(ActionId.RUN_PROBES)(finishing(probes))
    app.action(ActionId.ABORT)(finishing(open_abort))
    app.view(ViewId.ABORT)(finishing(submit_abort))
