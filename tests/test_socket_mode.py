"""Socket Mode end to end: the real Bolt ``SocketModeHandler`` over slack_sdk's builtin
client, against the fake Web API (``apps.connections.open``) and a loopback WebSocket
endpoint that speaks Slack's Socket Mode protocol (tests/support/socket_mode.py)."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bot.ops.settings import Settings
from bot.rendering.ids import ActionId
from bot.server import create_bot, serve_socket_mode
from bot.storage.db import upgrade
from tests.support.slack import APP_ID, TEAM_DOMAIN, TEAM_ID, FakeSlack
from tests.support.socket_mode import SocketModeServer, wait_for
from tests.test_scheduler_processes import BotProcess, bot_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP_TOKEN = "xapp-1-A0DEPLOYBOT-1-socketmode"
CHANNEL = "C0DEPLOYS"


def _reply(fake: FakeSlack, name: str) -> dict[str, Any]:
    """What the bot posted to the response URL called ``name``."""

    def found() -> dict[str, Any] | None:
        calls = [c for c in fake.calls("response_url") if c.path.endswith(f"/{name}")]
        return calls[-1].params if calls else None

    result: dict[str, Any] = wait_for(found, f"a reply at response URL {name}")
    return result


def test_socket_mode_deploy_start_and_refused_sign_off(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)  # loopback only: never through a proxy
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    upgrade(database_url)
    with FakeSlack() as fake, SocketModeServer() as endpoint:
        fake.usergroups = {"S0RELEASE": ["U0DEPLOYER"]}
        fake.usergroup_handles = {"S0RELEASE": "release-managers"}
        fake.socket_mode_url = endpoint.url
        settings = Settings(
            SLACK_BOT_TOKEN="xoxb-test",
            SLACK_APP_TOKEN=APP_TOKEN,
            SLACK_API_URL=fake.base_url,
            DATABASE_URL=database_url,
            DEPLOYBOT_CONFIG=str(EXAMPLES / "minimal.yaml"),
        )
        bot = create_bot(settings, publish_interval=0.2)
        bot.start(scheduler=False)
        handler = None
        try:
            handler = serve_socket_mode(bot, app_token=settings.slack_app_token, block=False)
            endpoint.wait_connected()
            [opened] = fake.calls("apps.connections.open")
            assert opened.headers.get("authorization") == f"Bearer {APP_TOKEN}"

            # /deploy start staging, as Slack delivers a slash command over the socket
            pushed = time.monotonic()
            envelope_id = endpoint.push(
                "slash_commands",
                {
                    "token": "verification-token",
                    "team_id": TEAM_ID,
                    "team_domain": TEAM_DOMAIN,
                    "channel_id": CHANNEL,
                    "channel_name": "deploys",
                    "user_id": "U0DEPLOYER",
                    "user_name": "u0deployer",
                    "command": "/deploy",
                    "text": "start staging",
                    "api_app_id": APP_ID,
                    "is_enterprise_install": "false",
                    "response_url": fake.response_url("start"),
                    "trigger_id": "1700000000.1.socketmode",
                },
                accepts_response_payload=True,
            )
            ack = endpoint.ack(envelope_id, timeout=3.0)
            assert ack["envelope_id"] == envelope_id
            assert time.monotonic() - pushed < 3.0, "Slack drops commands not acked in 3 s"

            [session] = wait_for(bot.runtime.service.list_open, "the deploy to open")
            assert (session.id, session.environment, session.requester) == (
                1,
                "staging",
                "U0DEPLOYER",
            )
            assert "Opened deploy #1 of staging" in _reply(fake, "start")["text"]
            bot.publisher.flush()
            summary_call = wait_for(
                lambda: [
                    c for c in fake.calls("chat.postMessage") if not c.params.get("thread_ts")
                ],
                "the summary message",
            )[0]
            summary = fake.messages(str(summary_call.params["channel"]))[0]
            assert summary.ts and summary.blocks

            # the outsider clicks "Sign off as QA Lead" on the summary
            envelope_id = endpoint.push(
                "interactive",
                {
                    "type": "block_actions",
                    "user": {
                        "id": "U0OUTSIDER",
                        "username": "u0outsider",
                        "name": "u0outsider",
                        "team_id": TEAM_ID,
                    },
                    "api_app_id": APP_ID,
                    "token": "verification-token",
                    "container": {
                        "type": "message",
                        "message_ts": summary.ts,
                        "channel_id": summary.channel,
                        "is_ephemeral": False,
                    },
                    "trigger_id": "1700000000.2.socketmode",
                    "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
                    "enterprise": None,
                    "is_enterprise_install": False,
                    "channel": {"id": summary.channel, "name": "deploys"},
                    "message": summary.as_payload(),
                    "state": {"values": {}},
                    "response_url": fake.response_url("so-outsider"),
                    "actions": [
                        {
                            "action_id": ActionId.SIGN_OFF.value,
                            "block_id": "actions",
                            "type": "button",
                            "value": "1|qa-lead",
                            "action_ts": f"{time.time():.6f}",
                        }
                    ],
                },
            )
            assert endpoint.ack(envelope_id, timeout=3.0)["envelope_id"] == envelope_id
            assert "only members of `approvers`" in _reply(fake, "so-outsider")["text"]
            assert not bot.runtime.service.get(1).signoffs

            # Socket Mode takes what the HTTP edge takes: a click whose user is a string is
            # acknowledged and dropped; a command with a NUL is answered, and opens nothing.
            garbled = endpoint.push(
                "interactive",
                {
                    "type": "block_actions",
                    "user": "U0OUTSIDER",
                    "actions": [{"action_id": ActionId.SIGN_OFF.value, "value": "1|qa-lead"}],
                    "response_url": fake.response_url("garbled"),
                },
            )
            assert endpoint.ack(garbled, timeout=3.0) == {"envelope_id": garbled}
            nul = endpoint.push(
                "slash_commands",
                {
                    "team_id": TEAM_ID,
                    "channel_id": CHANNEL,
                    "user_id": "U0DEPLOYER",
                    "command": "/deploy",
                    "text": "start stag\x00ing",
                    "api_app_id": APP_ID,
                    "response_url": fake.response_url("nul"),
                    "trigger_id": "1700000000.3.socketmode",
                },
                accepts_response_payload=True,
            )
            answer = endpoint.ack(nul, timeout=3.0)
            assert answer["payload"]["response_type"] == "ephemeral"
            assert "retype it without" in answer["payload"]["text"]
            time.sleep(0.5)  # anything handed on would have answered by now
            paths = [c.path for c in fake.calls("response_url")]
            assert not [p for p in paths if p.endswith(("/garbled", "/nul"))]
            assert [s.id for s in bot.runtime.service.list_open()] == [1]
        finally:
            if handler is not None:
                handler.close()  # type: ignore[no-untyped-call]
            bot.close()


def test_serve_in_socket_mode_serves_health_on_its_host_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    upgrade(database_url)
    with FakeSlack() as fake, SocketModeServer() as endpoint:
        fake.socket_mode_url = endpoint.url
        env = bot_env(database_url, EXAMPLES / "minimal.yaml", fake)
        env.update(SLACK_APP_TOKEN=APP_TOKEN, DEPLOYBOT_HOST="127.0.0.1")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        bot = BotProcess("socket", env, tmp_path)
        try:
            bot.wait_for("health on 127.0.0.1:")
            endpoint.wait_connected(timeout=20)
            port = re.search(r"health on 127\.0\.0\.1:(\d+)", bot.output())
            assert port is not None, bot.output()
            with urllib.request.urlopen(f"http://127.0.0.1:{port[1]}/healthz", timeout=5) as r:
                assert r.status == 200
            bot.proc.send_signal(signal.SIGTERM)
            assert bot.proc.wait(timeout=40) == 0, bot.output()
            assert "deploybot: stopped" in bot.output()
        finally:
            bot.kill()
