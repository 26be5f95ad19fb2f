"""Change control through the real Bolt app over HTTP, on SQLite and PostgreSQL: a change
freeze refused, then overridden with a reason (audited, shown, announced) with sign-offs
still required; a sign-off that takes two people."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from bot.domain import SessionState
from bot.rendering.ids import ActionId
from bot.storage.db import upgrade
from tests.e2e import EXAMPLES, RunningBot, running_bot


def frozen_config(tmp_path: Path) -> Path:
    config = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    config["roles"]["deployers"].append("U0CAPTAIN")
    config["roles"]["captains"] = ["U0CAPTAIN"]
    staging = config["environments"]["staging"]
    staging["checklist"] = str(EXAMPLES / "checklists" / "minimal.yaml")
    staging["freeze_override"] = ["captains"]
    staging["freezes"] = [
        {
            "from": "2000-01-01T00:00",
            "until": "2100-01-01T00:00",
            "timezone": "Europe/Berlin",
            "reason": "Black Friday",
        },
        {"rrule": "FREQ=WEEKLY;BYDAY=FR;BYHOUR=15", "duration": "66h", "timezone": "UTC"},
    ]
    path = tmp_path / "frozen.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_freeze_refuses_and_a_captain_overrides(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    with running_bot(database_url, config=frozen_config(tmp_path)) as bot:
        bot.command("start staging api v2", user="U0DEPLOYER", reply="frozen")
        said = bot.reply("frozen")["text"]
        assert "You can't start a deploy of staging during a change freeze: Black Friday" in said
        assert "until Fri 01 Jan 00:00 CET, 23:00 UTC on Thu 31 Dec" in said
        assert "Members of `captains` may override" in said
        bot.command('start staging api v2 --override "hotfix"', user="U0DEPLOYER", reply="not")
        assert "only members of `captains` can" in bot.reply("not")["text"]
        assert bot.fake.calls("chat.postMessage") == []

        bot.command("freezes staging", user="U0DEPLOYER", reply="list")
        listed = bot.reply("list")["text"]
        assert ":snowflake: *now* *staging*: Black Friday" in listed
        assert listed.count(":calendar:") == 3  # the next three weekly windows

        command = 'start staging api v2 --override "hotfix for INC-7"'
        bot.command(command, user="U0CAPTAIN", reply="override")
        assert bot.reply("override")["text"].startswith("Opened deploy #1 of staging api v2")
        session = bot.session(1)
        assert session.freeze_override is not None
        assert (session.freeze_override.by, session.freeze_override.reason) == (
            "U0CAPTAIN",
            "hotfix for INC-7",
        )
        kinds = [entry.kind for entry in bot.session_history(1)]
        assert kinds[:2] == ["session_opened", "freeze_overridden"]
        announced = _announcement(bot)
        assert announced.params["channel"] == "#deploys-staging"
        assert "<@U0CAPTAIN> overrode the change freeze" in announced.params["text"]
        assert "hotfix for INC-7" in announced.params["text"]
        summary = json.dumps(bot.summary().blocks)
        assert "Change freeze overridden" in summary and "hotfix for INC-7" in summary

        # The override is no sign-off: the gate still waits for them.
        bot.click("U0CAPTAIN", ActionId.START_DEPLOYMENT, "1", reply="early")
        assert "Still missing: sign-off from *QA Lead*" in bot.reply("early")["text"]
        bot.click("U0APPROVER1", ActionId.SIGN_OFF, "1|qa-lead", reply="qa")
        bot.wait_signed(1, "qa-lead")
        bot.click("U0APPROVER2", ActionId.SIGN_OFF, "1|devops-lead", reply="devops")
        bot.wait_signed(1, "devops-lead")
        bot.click("U0CAPTAIN", ActionId.START_DEPLOYMENT, "1", reply="deploy")
        bot.wait_state(1, SessionState.DEPLOYING)


def test_a_sign_off_takes_two_different_people(database_url: str, tmp_path: Path) -> None:
    config = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    staging = config["environments"]["staging"]
    staging["checklist"] = str(EXAMPLES / "checklists" / "minimal.yaml")
    staging["signoffs"] = [{"role": "QA", "by": ["approvers"], "count": 2}]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config))
    upgrade(database_url)
    with running_bot(database_url, config=path) as bot:
        bot.command("start staging api v3", user="U0DEPLOYER", reply="start")
        assert bot.reply("start")["text"].startswith("Opened deploy #1")
        bot.click("U0APPROVER1", ActionId.SIGN_OFF, "1|qa", reply="first")
        bot.wait_signed(1, "qa")
        _wait_summary(bot, "QA*: 1 of 2 (<@U0APPROVER1>)")
        bot.click("U0APPROVER1", ActionId.SIGN_OFF, "1|qa", reply="again")
        assert "You have already signed off as QA" in bot.reply("again")["text"]
        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="early")
        assert "sign-off from *QA* (1 of 2)" in bot.reply("early")["text"]
        bot.click("U0APPROVER2", ActionId.SIGN_OFF, "1|qa", reply="second")
        _wait_summary(bot, "QA*: 2 of 2 (<@U0APPROVER1>, <@U0APPROVER2>)")
        assert bot.session(1).signers("qa") == ("U0APPROVER1", "U0APPROVER2")
        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="deploy")
        bot.wait_state(1, SessionState.DEPLOYING)


def _wait_summary(bot: RunningBot, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in json.dumps(bot.summary().blocks, ensure_ascii=False):
        assert time.monotonic() < deadline, f"the summary never showed {text}"
        time.sleep(0.05)


def _announcement(bot: RunningBot) -> Any:
    fake = bot.fake
    deadline = time.monotonic() + 10
    while True:
        found = [
            call
            for call in fake.calls("chat.postMessage")
            if "overrode the change freeze" in call.params.get("text", "")
            and "thread_ts" not in call.params
        ]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "no announcement in the channel"
        time.sleep(0.05)
