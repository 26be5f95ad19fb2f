"""``/metrics`` on the running bot: a deploy that fails and is rolled back, counted.

The counters are process-wide, so every assertion compares two scrapes of ``/metrics``
(before and after) rather than absolute values; ``deploybot_sessions`` is absolute (a fresh
database per test).
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.domain import ItemStatus, SessionState
from bot.integrations.pagerduty import PagerDuty, page_payload
from bot.ops.metrics import registry_for
from bot.rendering.ids import ActionId
from bot.storage.db import upgrade
from bot.storage.outbox import PermanentFailure
from tests.e2e import RunningBot, running_bot
from tests.support.health import HealthEndpoint
from tests.support.pagerduty import FakePagerDuty

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def write_config(tmp_path: Path, health: HealthEndpoint) -> Path:
    (tmp_path / "checklist.yaml").write_text(
        "title: Release\nsections:\n  - title: Verify\n    items:\n"
        "      - text: API answers its health check\n        probe: api\n"
        "      - text: Smoke-test login\n",
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
  api: {{kind: http, url: "{health.url}/health", timeout: 3s}}
environments:
  prod:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    oncall: [oncall]
    signoffs:
      - role: QA Lead
        by: [approvers]
    rollback:
      - kind: command
        argv: [echo, rolled back]
        timeout: 10s
""",
        encoding="utf-8",
    )
    return config


def scrape(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode()


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def wait(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def slack_calls(bot: RunningBot) -> Counter[str]:
    return Counter(c.method for c in bot.fake.calls() if c.method != "response_url")


def test_metrics_count_a_deploy_that_fails_and_is_rolled_back(
    tmp_path: Path, health: HealthEndpoint
) -> None:
    database_url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    upgrade(database_url)
    config = write_config(tmp_path, health)
    with running_bot(database_url, config=config, background=True) as bot:
        content_type, text = scrape(bot.url)
        assert content_type.startswith("text/plain")
        assert "# TYPE deploybot_sessions gauge" in text
        before, calls_before = samples(text), slack_calls(bot)
        requests = 0

        def sent() -> None:
            nonlocal requests
            requests += 1

        bot.fake.rate_limit("chat.postMessage", times=1, retry_after=0)
        bot.command("start prod", user="U0DEPLOYER", reply="start")
        sent()
        assert "Opened deploy #1" in bot.reply("start")["text"]
        bot.tick("U0DEPLOYER", ["1.2"], reply="tick")
        sent()
        bot.wait_item(1, "1.2", ItemStatus.DONE)
        bot.click("U0APPROVER", ActionId.SIGN_OFF, "1|qa-lead", reply="sign")
        sent()
        wait(lambda: "qa-lead" in bot.session(1).signoffs, "sign-off recorded")
        bot.click("U0DEPLOYER", ActionId.START_DEPLOYMENT, "1", reply="deploy")
        sent()
        bot.wait_state(1, SessionState.DEPLOYING)
        bot.click("U0DEPLOYER", ActionId.FINISH_DEPLOYMENT, "1", reply="deployed")
        sent()
        bot.wait_state(1, SessionState.VERIFYING)
        bot.wait_item(1, "1.1", ItemStatus.DONE)

        health.healthy = False
        bot.click("U0DEPLOYER", ActionId.RUN_PROBES, "1", reply="probe")
        sent()
        bot.wait_state(1, SessionState.FAILED)
        health.healthy = True
        bot.click("U0ONCALL", ActionId.ROLL_BACK, "1", reply="rollback")
        sent()
        bot.wait_state(1, SessionState.ROLLED_BACK, timeout=30)
        bot.settle()  # the Homes too: every call made is counted before the scrape

        after = samples(scrape(bot.url)[1])
        calls_after = slack_calls(bot)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Sessions by state, counted from the database at scrape time; every state exported.
    assert value(after, "deploybot_sessions", state="rolled_back") == 1
    assert value(after, "deploybot_sessions", state="open") == 0
    assert ("deploybot_sessions", frozenset({("state", "rollback_failed")})) in after
    assert value(before, "deploybot_sessions", state="rolled_back") == 0

    # Probes: verification passed, the manual round failed, rollback verification passed.
    passed = delta("deploybot_probe_runs_total", kind="http", result="passed")
    failed = delta("deploybot_probe_runs_total", kind="http", result="failed")
    assert (passed, failed) == (2, 1)
    assert delta("deploybot_probe_duration_seconds_count", kind="http") == 3
    assert delta("deploybot_probe_duration_seconds_sum", kind="http") > 0
    assert delta("deploybot_probe_duration_seconds_bucket", kind="http", le="+Inf") == 3

    assert delta("deploybot_rollbacks_total", result="succeeded") == 1
    assert delta("deploybot_rollbacks_total", result="failed") == 0

    # Every Web API request the fake Slack saw is counted under its method, the 429 too.
    made = calls_after - calls_before
    assert made["chat.postMessage"] >= 2 and made["chat.update"] >= 1
    for method, count in made.items():
        assert delta("deploybot_slack_api_calls_total", method=method) == count, method
    assert delta("deploybot_slack_ratelimited_total", method="chat.postMessage") == 1
    assert delta("deploybot_slack_ratelimited_total", method="chat.update") == 0

    # One acknowledgement per request, each well inside Slack's 3 seconds.
    assert delta("deploybot_ack_seconds_count") == requests
    assert 0 < delta("deploybot_ack_seconds_sum") < 3 * requests
    assert delta("deploybot_ack_seconds_bucket", le="3.0") == requests


def test_pages_counted_as_sent_or_failed() -> None:
    registry = registry_for(None)  # what /metrics serves, less the database gauge

    def count(action: str, result: str) -> float:
        labels = {"action": action, "result": result}
        return registry.get_sample_value("deploybot_pages_total", labels) or 0.0

    payload = page_payload(
        action="trigger",
        env_name="prod",
        routing_key_env="PD_KEY_METRICS",
        session_id=7,
        probe="api",
        summary="api: HTTP 503",
        severity="critical",
        details={},
        link=None,
    )
    sent, failed = count("trigger", "sent"), count("trigger", "failed")
    with FakePagerDuty() as fake:
        pagerduty = PagerDuty(
            events_url=fake.url,
            verify=fake.client_ssl_context(),
            environ={"PD_KEY_METRICS": "R" * 32},
        )
        pagerduty.deliver(payload)
        fake.wait_for_events(1, timeout=10)
        with pytest.raises(PermanentFailure):
            PagerDuty(events_url=fake.url, environ={}).deliver(payload)  # no routing key
    assert (count("trigger", "sent") - sent, count("trigger", "failed") - failed) == (1, 1)
