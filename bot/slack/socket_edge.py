"""Socket Mode with the HTTP edge's checks (:func:`bot.slack.edge.check`).

Slack's Socket Mode client hands Bolt the envelope's payload as it came: a payload of the
wrong shape would reach the listeners unchecked. :class:`CheckedSocketModeHandler`
acknowledges such an envelope without handing it on (a slash command gets the ephemeral
answer the HTTP edge gives), so both ways in take the same requests.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.slack.edge import check

log = logging.getLogger(__name__)


class CheckedSocketModeHandler(SocketModeHandler):
    """Bolt's Socket Mode handler with the edge's checks in front of the app."""

    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        refusal = check(req.payload, interactive=req.type == "interactive")
        if refusal is None:
            super().handle(client, req)  # type: ignore[arg-type]
            return
        log.warning("refused a Socket Mode %s envelope: %s", req.type, refusal.body)
        payload: Any = None
        if refusal.status == 200 and req.accepts_response_payload:
            payload = json.loads(refusal.body)  # the ephemeral answer to a slash command
        client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload=payload)
        )
