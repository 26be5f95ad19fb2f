"""The Slack app manifest asks for exactly the bot scopes the code needs.

The scopes are derived from the source: every Slack Web API method the bot calls (found by
name in ``bot/`` and ``commands/``) maps to its scope through the table below. A method the
table does not know fails the test, so adding a call means deciding its scope here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from slack_sdk.web.client import WebClient

from commands.deploy import SUBCOMMANDS

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "slack-app-manifest.yaml"

# Web API method -> the bot scope it needs (None: no scope), from each method's page on
# api.slack.com ("Required scopes").
SCOPE_OF: dict[str, str | None] = {
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "views.open": None,
    "views.publish": None,
    "views.update": None,
    "views.push": None,
    "usergroups.list": "usergroups:read",
    "usergroups.users.list": "usergroups:read",
    "users.info": "users:read",
    # files_upload_v2 (as the scan names it) calls files.getUploadURLExternal and
    # files.completeUploadExternal, both files:write.
    "files.upload.v2": "files:write",
    # conversations.info needs channels:read, groups:read, im:read or mpim:read depending on
    # the channel: decide which before calling it.
}

# The bot's Slack-facing code. bot/sandbox is a local stand-in *for* Slack, not a client.
SOURCES = [p for d in ("bot", "commands") for p in (ROOT / d).rglob("*.py")]
SOURCES = [p for p in SOURCES if "sandbox" not in p.relative_to(ROOT).parts]


def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def web_api_methods_called() -> dict[str, set[str]]:
    """Web API method (``chat.postMessage``) -> the files that call it (or pass it on)."""
    client_methods = {
        name for name, value in vars(WebClient).items() if callable(value) and "_" in name
    }
    found: dict[str, set[str]] = {}
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\.api_call\(", text), f"{path}: name the method, not api_call"
        for match in re.finditer(r"\.([a-z]+(?:_[A-Za-z0-9]+)+)\b", text):
            if match[1] in client_methods:
                method = match[1].replace("_", ".")
                found.setdefault(method, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_manifest_declares_deploy_with_interactivity_and_socket_mode() -> None:
    data = manifest()
    (command,) = data["features"]["slash_commands"]
    assert command["command"] == "/deploy"
    assert command["description"]
    for sub in SUBCOMMANDS:
        assert sub in command["usage_hint"], f"usage hint does not mention {sub}"
    assert data["settings"]["interactivity"]["is_enabled"] is True
    assert data["settings"]["socket_mode_enabled"] is True
    assert data["features"]["bot_user"]["display_name"] == "deploybot"
    # Slack's limits on the display texts.
    info = data["display_information"]
    assert len(info["description"]) <= 140
    assert 175 <= len(info["long_description"]) <= 4000


def test_the_scan_finds_the_calls_we_know_of() -> None:
    found = web_api_methods_called()
    assert {"chat.postMessage", "chat.update", "views.open", "usergroups.users.list"} <= set(found)
    assert "bot/slack/publisher.py" in found["chat.update"]


def test_bot_scopes_are_exactly_those_of_the_methods_called() -> None:
    found = web_api_methods_called()
    unknown = sorted(set(found) - set(SCOPE_OF))
    assert not unknown, f"add these Web API methods to SCOPE_OF with their scope: {unknown}"
    needed = {"commands"} | {s for m in found if (s := SCOPE_OF[m]) is not None}
    scopes = manifest()["oauth_config"]["scopes"]
    assert sorted(scopes["bot"]) == sorted(needed)
    assert len(scopes["bot"]) == len(set(scopes["bot"]))
    assert "user" not in scopes, "the bot acts as itself, never as a user"
