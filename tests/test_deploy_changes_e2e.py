"""An analysis step and PagerDuty change events, end to end through the real Bolt app, on
SQLite and PostgreSQL: signed Slack requests start the deploy, the bot measures a loopback
health endpoint, and the HTTPS receiver gets a change event (Events v2 change-event shape)
when the deploy starts, finishes, or is rolled back after the analysis failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.domain import SessionState
from bot.domain.step_progress import StepState
from bot.integrations.pagerduty import change_payload
from bot.rendering.ids import ActionId, InputId, ViewId
from bot.storage.db import upgrade
from sandbox.pagerduty_change import validate_change_event
from tests.e2e import running_bot
from tests.support.health import HealthEndpoint
from tests.support.pagerduty import FakePagerDuty
from tests.test_deploy_steps_e2e import actions, pagerduty, python, start, thread_texts
from tests.test_rollback_e2e import ROUTING_KEY, pd_client, wait

__all__ = ["pagerduty"]  # the fixture, shared with the deploy steps' end-to-end tests


def write_config(
    tmp_path: Path, health: HealthEndpoint, rollback: list[dict[str, Any]] | None = None
) -> Path:
    checklist = {"sections": [{"title": "Verify", "items": [{"text": "api is up"}]}]}
    (tmp_path / "checklist.yaml").write_text(yaml.safe_dump(checklist))
    analysis = {"kind": "analysis", "probes": ["health"], "name": "canary analysis"}
    config = {
        "roles": {
            "deployers": ["U0DEPLOYER"],
            "approvers": ["U0APPROVER"],
            "oncall": ["U0ONCALL"],
        },
        "probes": {"health": {"kind": "http", "url": f"{health.url}/health", "timeout": "2s"}},
        "environments": {
            "prod": {
                "channel": "#deploys",
                "incident_channel": "#incidents",
                "checklist": "checklist.yaml",
                "starters": ["deployers"],
                "oncall": ["oncall"],
                "signoffs": [{"role": "QA Lead", "by": ["approvers"]}],
                "pagerduty": {"routing_key_env": "PD_KEY_PROD"},
                "services": {"api": {"deploy": {"steps": [analysis]}}},
                "rollback": rollback or [{"kind": "command", "argv": ["true"]}],
                "rollback_verify": "every 1s for 1s",
            }
        },
    }
    path = tmp_path / "deploybot.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def summaries(fake: FakePagerDuty) -> list[str]:
    return [e["payload"]["summary"] for e in fake.change_events()]


def test_an_analysis_step_passes_and_on_call_sees_the_deploy_start_and_finish(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    config = write_config(tmp_path, health)
    with running_bot(database_url, config=config, pagerduty=pd_client(pagerduty)) as bot:
        start(bot)
        bot.wait_state(1, SessionState.VERIFYING)
        wait(
            lambda: len(pagerduty.change_events()) >= 2,
            lambda: f"change events: {pagerduty.change_events()}",
        )
        wait(
            lambda: any("canary analysis) done" in t for t in thread_texts(bot)),
            lambda: f"the thread: {thread_texts(bot)}",
        )
        session = bot.session(1)
        replies = thread_texts(bot)

    assert session.steps[0].state is StepState.DONE
    assert session.steps[0].detail == "analysis passed (1 passed, 0 failed, 0 inconclusive)"
    assert any(
        t.startswith(":white_check_mark: Step 1 analysis: passed: health: ") for t in replies
    )
    started, finished = pagerduty.change_events()
    assert summaries(pagerduty) == ["prod api v2: deploy started", "prod api v2: deploy finished"]
    for event in (started, finished):
        assert validate_change_event(event) == []
        assert event["routing_key"] == ROUTING_KEY
        assert set(event) == {"routing_key", "payload", "links"}
        assert set(event["payload"]) == {"summary", "source", "timestamp", "custom_details"}
        assert event["payload"]["source"] == "deploybot/prod"
        assert event["links"][0]["text"] == "Deploy session #1"
    assert started["payload"]["custom_details"] == {
        "version": "v2",
        "service": "api",
        "requester": "U0DEPLOYER",
        "event": "deployment_started",
        "steps": "0 of 1 done",
        "environment": "prod",
        "session_id": 1,
    }
    assert finished["payload"]["custom_details"]["steps"] == "1 of 1 done"
    assert pagerduty.events() == []  # no alert: nothing failed


def test_a_failed_analysis_rolls_back_and_on_call_sees_it_rolled_back(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    health.healthy = False
    heal = python(f"import urllib.request; urllib.request.urlopen({health.url + '/heal'!r})")
    config = write_config(tmp_path, health, rollback=[{"kind": "command", "argv": heal}])
    with running_bot(database_url, config=config, pagerduty=pd_client(pagerduty)) as bot:
        start(bot)
        bot.wait_state(1, SessionState.ROLLED_BACK, timeout=30)
        wait(
            lambda: len(pagerduty.change_events()) >= 2,
            lambda: f"change events: {pagerduty.change_events()}",
        )
        session = bot.session(1)

    assert session.steps[0].state is StepState.FAILED
    assert (
        session.steps[0].detail
        == "analysis failed (0 passed, 1 failed, 0 inconclusive of 1 rounds)"
    )
    assert summaries(pagerduty) == [
        "prod api v2: deploy started",
        "prod api v2: deploy rolled back",
    ]
    rolled_back = pagerduty.change_events()[1]["payload"]["custom_details"]
    assert rolled_back["failed_step"] == (
        "canary analysis: analysis failed (0 passed, 1 failed, 0 inconclusive of 1 rounds)"
    )
    assert all(validate_change_event(e) == [] for e in pagerduty.change_events())


def test_the_receiver_refuses_what_a_change_event_may_not_carry(
    pagerduty: FakePagerDuty,
) -> None:
    from datetime import UTC, datetime

    from bot.integrations.pagerduty import PagerDuty

    payload = change_payload(
        env_name="prod",
        routing_key_env="PD_KEY_PROD",
        session_id=7,
        summary="prod api v2: deploy started",
        details={"version": "v2"},
        link="https://example.slack.com/archives/C1/p1",
        at=datetime(2026, 11, 26, 12, tzinfo=UTC),
    )
    PagerDuty(events_url=pagerduty.url, verify=pagerduty.client_ssl_context()).deliver(payload)
    (event,) = pagerduty.change_events()
    assert event["payload"]["timestamp"] == "2026-11-26T12:00:00+00:00"
    assert event["links"] == [
        {"href": "https://example.slack.com/archives/C1/p1", "text": "Deploy session #7"}
    ]
    bad = {**event, "event_action": "trigger", "payload": {**event["payload"], "severity": "info"}}
    assert validate_change_event(bad) == [
        "Unknown field 'event_action'",
        "Unknown field 'payload.severity'",
    ]
    assert validate_change_event({"routing_key": "short", "payload": {"summary": " "}}) == [
        "Length of 'routing_key' is incorrect (should be 32 characters)",
        "'payload.summary' is missing or blank",
    ]


def test_abort_during_the_deploy_stops_it_and_the_incident_offers_rollback(
    database_url: str, tmp_path: Path, pagerduty: FakePagerDuty, health: HealthEndpoint
) -> None:
    upgrade(database_url)
    config = write_config(tmp_path, health)
    data = yaml.safe_load(config.read_text())
    pause = {"kind": "pause", "continue_by": ["oncall"], "timeout": "1h", "name": "judgment"}
    data["environments"]["prod"]["services"]["api"]["deploy"]["steps"].append(pause)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with running_bot(database_url, config=config, pagerduty=pd_client(pagerduty)) as bot:
        start(bot)
        wait(
            lambda: "Continue step 2" in [e["text"]["text"] for e in actions(bot)],
            lambda: f"a Continue button: {[e['text']['text'] for e in actions(bot)]}",
        )
        (abort,) = [e for e in actions(bot) if e["action_id"] == ActionId.ABORT]
        assert "stops after the step under way" in abort["confirm"]["text"]["text"]
        bot.click("U0DEPLOYER", ActionId.ABORT, "1", reply="abort")
        view = bot.fake.wait_for("views.open")[0].params["view"]
        answer = bot.slack.view_submission(
            user_id="U0DEPLOYER",
            callback_id=ViewId.ABORT,
            private_metadata=view["private_metadata"],
            values={
                InputId.ABORT_REASON: {
                    InputId.ABORT_REASON: {"type": "plain_text_input", "value": "error spike"}
                }
            },
        )
        assert answer.status == 200
        bot.wait_state(1, SessionState.FAILED)
        wait(lambda: bot.fake.messages("#incidents"), "the incident message")
        incident = bot.fake.messages("#incidents")[0]
        buttons = [e["text"]["text"] for b in incident.blocks if b["type"] == "actions"
                   for e in b["elements"]]  # fmt: skip
        session = bot.session(1)

    assert [s.state for s in session.steps] == [StepState.DONE, StepState.FAILED]
    assert session.steps[1].detail == "stopped: <@U0DEPLOYER>: error spike aborted the deploy"
    assert "Roll back" in buttons and "Retry step 2" in buttons
    assert pagerduty.events() == []  # a person stopped it: nobody is paged
