"""Session buttons: sign off, start and finish the deployment, complete, abort."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.domain.commands import Abort, Command, Complete, FinishDeployment, SignOff, StartDeployment
from bot.domain.errors import DeployError
from bot.rendering.ids import ActionId, InputId, ViewId, unpack
from bot.rendering.limits import validate_view
from bot.rendering.modals import abort_modal
from commands.deploy import run_probes
from commands.deps import Deps, in_background, replying_errors

SIMPLE: dict[str, type[StartDeployment] | type[FinishDeployment] | type[Complete]] = {
    ActionId.START_DEPLOYMENT: StartDeployment,
    ActionId.FINISH_DEPLOYMENT: FinishDeployment,
    ActionId.COMPLETE: Complete,
}


def register(app: App, deps: Deps) -> None:
    def act(session_id: str, command: Command, user: str) -> None:
        try:
            deps.service.act(int(session_id), command, user)
        finally:
            deps.publisher.changed(int(session_id))

    def handle_sign_off(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        session_id, key = unpack(action["value"])
        replying_errors(respond, lambda: act(session_id, SignOff(key), body["user"]["id"]))

    def handle_simple(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        command = SIMPLE[action["action_id"]]()

        def work() -> None:
            act(action["value"], command, body["user"]["id"])
            if isinstance(command, FinishDeployment):  # deployed: verify with the probes now
                session_id = int(action["value"])
                in_background(deps, respond, lambda: verify(session_id))

        replying_errors(respond, work)

    def verify(session_id: int) -> None:
        if any(item.probe for _, item in deps.service.get(session_id).checklist.walk()):
            deps.probes.run(session_id, why="verification")

    def handle_run_probes(ack: Ack, action: dict[str, Any], respond: Respond) -> None:
        ack()
        replying_errors(respond, lambda: run_probes(deps, int(action["value"]), respond))

    def open_abort(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond
    ) -> None:
        ack()

        def work() -> None:
            view = abort_modal(deps.service.get(int(action["value"])))
            validate_view(view)
            client.views_open(trigger_id=body["trigger_id"], view=view)

        replying_errors(respond, work)

    def submit_abort(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = view["state"]["values"]
        reason = (values[InputId.ABORT_REASON][InputId.ABORT_REASON].get("value") or "").strip()
        session_id = view["private_metadata"]
        try:
            deps.service.act(int(session_id), Abort(reason), body["user"]["id"])
        except DeployError as refused:
            ack(response_action="errors", errors={InputId.ABORT_REASON: str(refused)[:150]})
            return
        ack()
        deps.publisher.changed(int(session_id))

    app.action(ActionId.SIGN_OFF)(handle_sign_off)
    for action_id in SIMPLE:
        app.action(action_id)(handle_simple)
    app.action(ActionId.RUN_PROBES)(handle_run_probes)
    app.action(ActionId.ABORT)(open_abort)
    app.view(ViewId.ABORT)(submit_abort)
