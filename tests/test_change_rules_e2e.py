"""Promotion order, version changes and break-glass through the real Bolt app over HTTP, on
SQLite and PostgreSQL: prod refuses a version staging has not completed, then opens and
links the staging deploy; a new version withdraws the sign-offs (audited, announced); an
emergency skips the freeze, the promotion and the named sign-off only, pages on-call
(informational), posts in the incident channel and owes a retrospective."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.domain import SessionState
from bot.integrations.pagerduty import PagerDuty
from bot.rendering.ids import ActionId
from bot.storage.db import upgrade
from tests.e2e import EXAMPLES, RunningBot, running_bot
from tests.support.pagerduty import FakePagerDuty
from tests.support.slack import Message

ROUTING_KEY = "R" * 32


def rules_config(tmp_path: Path, *, frozen: bool = True) -> Path:
    checklist = tmp_path / "short.yaml"
    checklist.write_text(
        yaml.safe_dump({"sections": [{"title": "Checks", "items": [{"text": "Tests pass"}]}]})
    )
    config = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    config["roles"]["deployers"].append("U0COMMANDER")
    config["roles"]["commanders"] = ["U0COMMANDER"]
    config["roles"]["leads"] = ["U0LEAD"]
    staging = config["environments"]["staging"]
    staging.update(
        checklist=str(checklist),
        probes=[],
        signoffs=[{"role": "QA Lead", "by": ["approvers"]}],
    )
    del staging["monitoring"]
    config["environments"]["prod"] = {
        "channel": "#deploys-prod",
        "incident_channel": "#incidents-prod",
        "checklist": str(checklist),
        "starters": ["deployers"],
        "oncall": ["oncall"],
        "signoffs": [
            {"role": "QA Lead", "by": ["approvers"]},
            {"role": "DevOps Lead", "by": ["approvers"]},
        ],
        "pagerduty": {"routing_key_env": "PD_KEY_PROD"},
        "requires": {"environment": "staging", "within": "7d"},
        "freezes": [{"from": "2000-01-01T00:00", "until": "2100-01-01T00:00", "reason": "Audit"}],
        "emergency": {
            "roles": ["commanders"],
            "skip_signoffs": ["QA Lead"],
            "skip_promotion": True,
            "retrospective": {"role": "Post-incident review", "by": ["leads"]},
        },
    }
    if not frozen:
        del config["environments"]["prod"]["freezes"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def pagerduty(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePagerDuty]:
    monkeypatch.setenv("PD_KEY_PROD", ROUTING_KEY)
    with FakePagerDuty() as fake:
        yield fake


def summary(bot: RunningBot, channel: str, containing: str = "") -> Message:
    """The latest summary in ``channel``, once it shows ``containing``."""
    deadline = time.monotonic() + 10
    while True:
        bot.bot.publisher.flush()
        found = [m for m in bot.fake.messages(channel) if m.blocks]
        if found and containing in json.dumps(found[-1].blocks, ensure_ascii=False):
            return found[-1]
        assert time.monotonic() < deadline, f"no summary in {channel} showing {containing!r}"
        time.sleep(0.05)


def click(
    bot: RunningBot, channel: str, user: str, action: ActionId, value: str, reply: str
) -> Any:
    shown = summary(bot, channel)
    return bot.slack.block_action(
        user_id=user,
        action_id=action,
        value=value,
        block_id="actions",
        channel_id=shown.channel,
        message_ts=shown.ts,
        response_url=bot.fake.response_url(reply),
    )


def thread_note(bot: RunningBot, channel: str, containing: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        top = summary(bot, channel)
        notes = [m.text for m in bot.fake.thread(top.channel, top.ts) if containing in m.text]
        if notes:
            return notes[0]
        assert time.monotonic() < deadline, f"no note with {containing!r} in the thread"
        time.sleep(0.05)


def test_promotion_order_and_a_new_version(database_url: str, tmp_path: Path) -> None:
    upgrade(database_url)
    with running_bot(database_url, config=rules_config(tmp_path, frozen=False)) as bot:
        bot.command("start prod api 1.4", user="U0DEPLOYER", reply="early")
        said = bot.reply("early")["text"]
        assert "prod needs api 1.4 to have completed in staging within 7d" in said
        assert "Deploy it to staging first: `/deploy start staging api 1.4`" in said
        bot.command("start prod api", user="U0DEPLOYER", reply="noversion")
        assert "give the version" in bot.reply("noversion")["text"]

        # Staging: a QA sign-off, then the version changes: the sign-off is withdrawn.
        bot.command("start staging api 1.3", user="U0DEPLOYER", reply="staging")
        assert bot.reply("staging")["text"].startswith("Opened deploy #1")
        click(bot, "#deploys-staging", "U0APPROVER1", ActionId.SIGN_OFF, "1|qa-lead", "qa")
        bot.wait_signed(1, "qa-lead")
        bot.command("version 1 1.4", user="U0APPROVER2", reply="outsider")
        assert "only the requester <@U0DEPLOYER> or members of" in bot.reply("outsider")["text"]
        bot.command("version 1 1.4", user="U0DEPLOYER", reply="version")
        assert "1 sign-off(s) withdrawn" in bot.reply("version")["text"]
        session = bot.session(1)
        assert (session.version, session.signoffs) == ("1.4", {})
        kinds = [e.kind for e in bot.session_history(1)]
        assert kinds[-2:] == ["version_changed", "signoff_withdrawn"]
        note = thread_note(bot, "#deploys-staging", "changed the version")
        assert "from `1.3` to `1.4`" in note and "QA Lead (<@U0APPROVER1>)" in note
        summary(bot, "#deploys-staging", "staging api 1.4")
        click(bot, "#deploys-staging", "U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", "gate")
        assert "sign-off from *QA Lead*" in bot.reply("gate")["text"]
        click(bot, "#deploys-staging", "U0APPROVER1", ActionId.SIGN_OFF, "1|qa-lead", "qa2")
        bot.wait_signed(1, "qa-lead")
        for action, state in (
            (ActionId.START_DEPLOYMENT, SessionState.DEPLOYING),
            (ActionId.FINISH_DEPLOYMENT, SessionState.VERIFYING),
            (ActionId.COMPLETE, SessionState.COMPLETED),
        ):
            summary(bot, "#deploys-staging", action.value)
            click(bot, "#deploys-staging", "U0DEPLOYER", action, "1", action.value)
            bot.wait_state(1, state)

        # Prod now takes api 1.4, and its summary links the staging deploy.
        bot.command("start prod api 1.4", user="U0DEPLOYER", reply="prod")
        assert bot.reply("prod")["text"].startswith("Opened deploy #2 of prod api 1.4")
        promoted = bot.session(2).promoted_from
        assert promoted is not None and (promoted.session_id, promoted.environment) == (
            1,
            "staging",
        )
        assert [e.kind for e in bot.session_history(2)][:2] == [
            "session_opened",
            "promotion_checked",
        ]
        staging_summary = summary(bot, "#deploys-staging")
        link = f"/archives/{staging_summary.channel}/p{staging_summary.ts.replace('.', '')}|"
        shown = json.dumps(summary(bot, "#deploys-prod", "Promoted from").blocks)
        assert link + "deploy #1>" in shown
        # A version staging has not completed is refused for the open prod deploy too.
        bot.command("version 2 2.1", user="U0DEPLOYER", reply="newer")
        assert (
            "Deploy it to staging first: `/deploy start staging api 2.1`"
            in (bot.reply("newer")["text"])
        )
        assert bot.session(2).version == "1.4"


def test_break_glass(database_url: str, tmp_path: Path, pagerduty: FakePagerDuty) -> None:
    upgrade(database_url)
    pd = PagerDuty(events_url=pagerduty.url, verify=pagerduty.client_ssl_context())
    with running_bot(database_url, config=rules_config(tmp_path), pagerduty=pd) as bot:
        bot.command('start prod api 9.9 --emergency "site down"', user="U0DEPLOYER", reply="no")
        assert "only members of `commanders` can" in bot.reply("no")["text"]
        bot.command("start prod api 9.9 --emergency", user="U0COMMANDER", reply="why")
        assert "Say why you break glass" in bot.reply("why")["text"]
        command = 'start prod api 9.9 --emergency "site down, INC-42"'
        bot.command(command, user="U0COMMANDER", reply="glass")
        assert "as an :rotating_light: emergency" in bot.reply("glass")["text"]
        session = bot.session(1)
        assert session.emergency is not None and session.emergency.reason == "site down, INC-42"
        assert [r.key for r in session.policy.signoffs] == ["devops-lead"]
        history = bot.session_history(1)
        declared = [e for e in history if e.kind == "emergency_declared"]
        assert [e.actor for e in declared] == ["U0COMMANDER"]
        assert declared[0].data["skipped"][:2] == ["sign-off QA Lead", "promotion from staging"]

        page = pagerduty.wait_for_events(1, timeout=10)[0]
        assert (page["event_action"], page["payload"]["severity"]) == ("trigger", "info")
        assert page["dedup_key"] == "deploybot/prod/session-1/emergency"
        assert "site down, INC-42" in page["payload"]["summary"]
        posted = bot.fake.wait_for("chat.postMessage", count=1)
        deadline = time.monotonic() + 10
        while not [c for c in posted if c.params["channel"] == "#incidents-prod"]:
            assert time.monotonic() < deadline, "nothing in the incident channel"
            time.sleep(0.05)
            posted = bot.fake.calls("chat.postMessage")
        told = next(c for c in posted if c.params["channel"] == "#incidents-prod").params["text"]
        assert "declared an *emergency deploy* #1" in told and "retrospective" in told

        shown = json.dumps(summary(bot, "#deploys-prod", "EMERGENCY").blocks, ensure_ascii=False)
        assert "Post-incident review*: outstanding" in shown
        assert "/deploy retrospective 1 <note>" in shown

        # The skipped sign-off is not asked for; the one not named still is.
        click(bot, "#deploys-prod", "U0COMMANDER", ActionId.START_DEPLOYMENT, "1", "gate")
        said = bot.reply("gate")["text"]
        assert "sign-off from *DevOps Lead*" in said and "QA Lead" not in said
        click(bot, "#deploys-prod", "U0APPROVER2", ActionId.SIGN_OFF, "1|devops-lead", "ops")
        bot.wait_signed(1, "devops-lead")
        # The freeze in force is skipped: break-glass was declared for it.
        click(bot, "#deploys-prod", "U0COMMANDER", ActionId.START_DEPLOYMENT, "1", "deploy")
        bot.wait_state(1, SessionState.DEPLOYING)

        bot.command("retrospective 1 done", user="U0COMMANDER", reply="own")
        assert "only members of `leads` can" in bot.reply("own")["text"]
        bot.command('retrospective 1 "INC-42 review held"', user="U0LEAD", reply="retro")
        assert "Retrospective of deploy #1 signed" in bot.reply("retro")["text"]
        emergency = bot.session(1).emergency
        assert emergency is not None and emergency.retrospective_by == "U0LEAD"
        summary(bot, "#deploys-prod", "✅ *Post-incident review*: <@U0LEAD>")
        # Nothing is owed any more: the informational alert is resolved.
        deadline = time.monotonic() + 10
        while pagerduty.alert("deploybot/prod/session-1/emergency").status != "resolved":
            assert time.monotonic() < deadline, "the emergency alert was never resolved"
            time.sleep(0.05)
        assert thread_note(bot, "#deploys-prod", "signed the retrospective").endswith(
            "INC-42 review held"
        )
