"""Session buttons: sign off, start and finish the deployment, complete, run probes, abort."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.domain.commands import Abort, Complete, FinishDeployment, SignOff, StartDeployment
from bot.domain.errors import DeployError
from bot.rendering.ids import ActionId, InputId, ViewId, unpack
from bot.rendering.limits import validate_view
from bot.rendering.modals import abort_modal
from commands.deploy import run_probes
from commands.deps import deps_of, finishing, parse_id, request_of

SIMPLE: dict[str, type[StartDeployment] | type[FinishDeployment] | type[Complete]] = {
    ActionId.START_DEPLOYMENT: StartDeployment,
    ActionId.FINISH_DEPLOYMENT: FinishDeployment,
    ActionId.COMPLETE: Complete,
}


def sign_off(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
    ack()
    session_id, key = unpack(action["value"])
    deps_of(context).service.act(
        parse_id(session_id), SignOff(key), body["user"]["id"], request=request_of(context)
    )


def simple(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext) -> None:
    """Start deployment, deployed (verification follows as an effect), complete."""
    ack()
    command = SIMPLE[action["action_id"]]()
    deps = deps_of(context)
    deps.service.act(
        parse_id(action["value"]), command, body["user"]["id"], request=request_of(context)
    )


def probes(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    ack()
    run_probes(
        deps_of(context),
        parse_id(action["value"]),
        body["user"]["id"],
        request_of(context),
        body.get("response_url"),
        respond,
    )


def open_abort(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    ack()
    view = abort_modal(deps_of(context).service.get(parse_id(action["value"])))
    validate_view(view)
    client.views_open(trigger_id=body["trigger_id"], view=view)


def submit_abort(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    values = view["state"]["values"]
    reason = (values[InputId.ABORT_REASON][InputId.ABORT_REASON].get("value") or "").strip()
    try:
        deps_of(context).service.act(
            parse_id(view["private_metadata"]),
            Abort(reason),
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
