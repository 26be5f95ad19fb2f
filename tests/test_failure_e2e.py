"""The failure path end to end, on SQLite and PostgreSQL: a probe turns critical, the page
arrives, the incident thread opens, a rollback runs exactly once and the alert is resolved."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.domain import SessionState
from bot.integrations.pagerduty import PagerDuty
from bot.rendering.ids import ActionId
from bot.storage.db import upgrade
from bot.storage.models import OutboxRow
from tests.e2e import RunningBot, running_bot
from tests.support.health import HealthEndpoint
from tests.support.pagerduty import FakePagerDuty
from tests.support.slack import Message

ROUTING_KEY = "R" * 32


@pytest.fixture
def pagerduty(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePagerDuty]:
    monkeypatch.setenv("PD_KEY_PROD", ROUTING_KEY)
    with FakePagerDuty() as fake:
        yield fake


def write_config(tmp_path: Path, health: HealthEndpoint) -> Path:
    (tmp_path / "checklist.yaml").write_text(
        "title: Release\nsections:\n  - title: Verify\n    items:\n"
        "      - text: API answers its health check\n        probe: api\n",
        encoding="utf-8",
    )
    # The rollback heals the endpoint and leaves a mark per run, so runs can be counted.
    heal = tmp_path / "heal.py"
    heal.write_text(
        "import urllib.request\n"
        f"urllib.request.urlopen({health.url + '/heal'!r})\n"
        f"open({str(tmp_path / 'rollbacks.log')!r}, 'a').write('ran\\n')\n",
        encoding="utf-8",
    )
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        f"""
roles:
  deployers: [U0DEPLOYER]
  approvers: [U0APPROVER]
  oncall: [U0ONCALL]
probes:
  api:
    kind: http
    url: {health.url}/health
    timeout: 3s
environments:
  prod:
    channel: "#deploys"
    incident_channel: "#incidents"
    checklist: checklist.yaml
    starters: [deployers]
    oncall: [oncall]
    signoffs:
      - role: QA Lead
        by: [approvers]
    pagerduty: {{routing_key_env: PD_KEY_PROD}}
    rollback:
      - kind: command
        argv: ["{sys.executable}", "{heal}"]
        timeout: 30s
""",
        encoding="utf-8",
    )
    return config


def wait(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def incident_message(bot: RunningBot, showing: Callable[[Message], bool]) -> Message:
    """The incident message once it shows what ``showing`` looks for (after its updates)."""
    found: list[Message] = []

    def shown() -> bool:
        bot.bot.publisher.flush()
        found[:] = [m for m in bot.fake.messages("#incidents") if showing(m)]
        return bool(found)

    wait(shown, "the incident message to be updated")
    return found[-1]


def buttons_of(message: Message) -> list[str]:
    return [e["action_id"] for b in message.blocks if b["type"] == "actions" for e in b["elements"]]


def test_failure_page_incident_rollback_resolve(
    database_url: str, tmp_path: Path, health: HealthEndpoint, pagerduty: FakePagerDuty
) -> None:
    upgrade(database_url)
    pd = PagerDuty(events_url=pagerduty.url, verify=pagerduty.client_ssl_context())
    config = write_config(tmp_path, health)
    with running_bot(database_url, config=config, pagerduty=pd, background=True) as bot:
        fake = bot.fake
        bot.command("start prod api v2", user="U0DEPLOYER", reply="start")
        assert "Opened deploy #1" in bot.reply("start")["text"]
        bot.click("U0APPROVER", ActionId.SIGN_OFF, "1|qa-lead", reply="sign")
        wait(lambda: "qa-lead" in bot.session(1).signoffs, "sign-off recorded")
        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="deploy")
        bot.wait_state(1, SessionState.DEPLOYING)
        bot.click("U0DEPLOYER", ActionId.FINISH_DEPLOYMENT, "1", reply="deployed")
        bot.wait_state(1, SessionState.VERIFYING)
        wait(lambda: bot.session(1).progress("1.1").status.value == "done", "verified")

        # The service breaks; the next probe round fails the deploy and pages.
        health.healthy = False
        bot.click("U0DEPLOYER", ActionId.RUN_PROBES, "1", reply="probe")
        bot.wait_state(1, SessionState.FAILED)
        trigger = pagerduty.wait_for_events(1, timeout=20)[0]
        assert trigger["event_action"] == "trigger"
        assert trigger["routing_key"] == ROUTING_KEY
        assert trigger["dedup_key"] == "deploybot/prod/session-1/api"
        assert trigger["payload"]["severity"] == "critical"
        assert trigger["payload"]["component"] == "api"
        assert "HTTP 503" in trigger["payload"]["summary"]
        assert pagerduty.alert("deploybot/prod/session-1/api").status == "triggered"

        fake.wait_for("chat.postMessage", count=3)  # summary, checklist, incident
        roots = [c for c in fake.calls("chat.postMessage") if c.params["channel"] == "#incidents"]
        assert len(roots) == 1
        root_text = json.dumps(roots[0].params["blocks"])
        assert "<@U0ONCALL>" in root_text and "api" in root_text
        # Once the session has failed, the message offers all three (posted while the round
        # that failed it was still recording, it may first have offered only Roll back).
        failed = [ActionId.ACKNOWLEDGE, ActionId.ROLL_BACK, ActionId.RESOLVE]
        incident_message(bot, lambda m: buttons_of(m) == failed)

        # On-call acknowledges: the incident message says who, and offers no Acknowledge.
        bot.click("U0ONCALL", ActionId.ACKNOWLEDGE, "1", reply="ack")
        incident = incident_message(bot, lambda m: "Acknowledged by <@U0ONCALL>" in str(m.blocks))
        assert buttons_of(incident) == [ActionId.ROLL_BACK, ActionId.RESOLVE]

        # An outsider may not roll back; two responders click at the same moment: one rollback.
        bot.click("U0DEPLOYER", ActionId.ROLL_BACK, "1", reply="outsider")
        assert "only members of `oncall`, `approvers`" in bot.reply("outsider")["text"]
        clicks = [
            threading.Thread(target=bot.click, args=(user, ActionId.ROLL_BACK, "1", f"rb-{user}"))
            for user in ("U0ONCALL", "U0APPROVER")
        ]
        for t in clicks:
            t.start()
        for t in clicks:
            t.join()
        try:
            bot.wait_state(1, SessionState.ROLLED_BACK, timeout=40)
        except AssertionError:
            raise AssertionError(
                f"{bot.session(1).outcome_reason}; {bot.bot.runtime.service.history(1)[-6:]}"
            ) from None
        answers = {bot.reply(f"rb-{u}")["text"] for u in ("U0ONCALL", "U0APPROVER")}
        assert any("Rolling back deploy #1" in a for a in answers)
        assert any("already under way" in a or "rolled back" in a for a in answers)
        assert (tmp_path / "rollbacks.log").read_text(encoding="utf-8") == "ran\n"

        wait(
            lambda: pagerduty.alert("deploybot/prod/session-1/api").status == "resolved",
            "the alert is resolved",
        )
        # The incident message follows: rolled back, and no button applies any more.
        incident = incident_message(bot, lambda m: "Rolled back" in str(m.blocks))
        assert buttons_of(incident) == []
        assert (
            len([c for c in fake.calls("chat.postMessage") if c.params["channel"] == "#incidents"])
            == 1
        )
        history = [e.kind for e in bot.bot.runtime.service.history(1)]
        for kind in (
            "incident_opened",
            "rollback_started",
            "rollback_step_done",
            "rollback_succeeded",
        ):
            assert kind in history
        assert history.count("rollback_started") == 1

        bot.command("report 1", user="U0ONCALL", reply="report")
        assert "Report posted in the thread" in bot.reply("report")["text"]
        wait(lambda: len([f for f in fake.files() if f.completed]) == 2, "the report's files")
        report = next(f.text for f in fake.files() if f.name == "deploy-1-report.md")
        assert "rolled back" in report
        assert "rollback_step_done" in report
        # Probe results: the api probe ran (verify, failing run, rollback verification).
        assert "| api | 3 | 1 | ✅ HTTP 200" in report


def test_probes_before_the_deploy_page_nobody(
    database_url: str,
    tmp_path: Path,
    health: HealthEndpoint,
    pagerduty: FakePagerDuty,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    upgrade(database_url)
    pd = PagerDuty(events_url=pagerduty.url, verify=pagerduty.client_ssl_context())
    config = write_config(tmp_path, health)
    # A second probe that cannot run at all: its header's variable is not set.
    text = config.read_text(encoding="utf-8").replace(
        "probes:\n",
        f"probes:\n  admin:\n    kind: http\n    url: {health.url}/health\n"
        "    headers_from_env: {Authorization: API_TOKEN}\n",
    )
    config.write_text(text, encoding="utf-8")
    checklist = tmp_path / "checklist.yaml"
    checklist.write_text(
        checklist.read_text(encoding="utf-8")
        + "      - text: Admin API answers\n        probe: admin\n",
        encoding="utf-8",
    )
    with running_bot(database_url, config=config, pagerduty=pd, background=True) as bot:
        health.healthy = False
        bot.command("start prod api v2", user="U0DEPLOYER", reply="start")
        assert "Opened deploy #1" in bot.reply("start")["text"]
        bot.click("U0DEPLOYER", ActionId.RUN_PROBES, "1", reply="probe")
        wait(lambda: bot.session(1).progress("1.2").status.value == "failed", "probes ran")
        wait(lambda: bot.session(1).progress("1.1").status.value == "failed", "probes ran")
        bot.bot.publisher.flush()

        # The items failed and the gate waits, but nobody was paged and no incident opened.
        session = bot.session(1)
        assert session.incident is None
        with bot.bot.runtime.service.session_factory() as db:  # written with the results
            assert db.scalar(select(func.count()).where(OutboxRow.topic == "pagerduty")) == 0
        assert pagerduty.events() == []
        assert bot.fake.messages("#incidents") == []
        summary = bot.fake.messages("#deploys")[0]
        notes = [m.text for m in bot.fake.thread("#deploys", summary.ts)]
        assert any(":warning: Probe *api* (critical): HTTP 503" in n for n in notes), notes
        assert any(
            "<@U0DEPLOYER> probe *admin* could not run (not runnable: environment variable "
            "API_TOKEN is not set). That is a configuration problem" in n
            for n in notes
        ), notes
        history = [e.kind for e in bot.bot.runtime.service.history(1)]
        assert "incident_opened" not in history
