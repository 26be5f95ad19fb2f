"""A page links to the incident thread (issue 11, item 15), and Slack being down never holds
a page back for more than the link's wait."""

from __future__ import annotations

import time
from pathlib import Path

from bot.domain import SessionState
from bot.integrations.pagerduty import PagerDuty
from bot.rendering.ids import ActionId
from bot.slack.paging import THREAD_TEXT
from bot.storage.db import upgrade
from tests.e2e import running_bot
from tests.support.health import HealthEndpoint
from tests.support.pagerduty import FakePagerDuty
from tests.support.slack import TEAM_DOMAIN
from tests.test_failure_e2e import pagerduty, write_config
from tests.test_rollback_e2e import deploy_and_verify

__all__ = ["pagerduty"]  # the fixture, used by name


def permalink(channel: str, ts: str) -> str:
    return f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"


def test_the_trigger_links_to_the_incident_thread(
    database_url: str, tmp_path: Path, health: HealthEndpoint, pagerduty: FakePagerDuty
) -> None:
    upgrade(database_url)
    pd = PagerDuty(events_url=pagerduty.url, verify=pagerduty.client_ssl_context())
    config = write_config(tmp_path, health)
    with running_bot(database_url, config=config, pagerduty=pd, background=True) as bot:
        deploy_and_verify(bot)
        health.healthy = False
        bot.click("U0DEPLOYER", ActionId.RUN_PROBES, "1", reply="probe")
        trigger = pagerduty.wait_for_events(1, timeout=20)[0]
        assert trigger["event_action"] == "trigger"
        (incident,) = bot.fake.messages("#incidents")
        summary = bot.fake.messages("#deploys")[0]
        assert trigger["links"] == [
            {"href": permalink(incident.channel, incident.ts), "text": THREAD_TEXT},
            {"href": permalink(summary.channel, summary.ts), "text": "Deploy session #1"},
        ]
        alert = pagerduty.alert("deploybot/prod/session-1/api")
        assert alert.links[0]["href"] == permalink(incident.channel, incident.ts)


def test_with_slack_down_the_page_goes_out_within_the_wait(
    database_url: str, tmp_path: Path, health: HealthEndpoint, pagerduty: FakePagerDuty
) -> None:
    upgrade(database_url)
    pd = PagerDuty(events_url=pagerduty.url, verify=pagerduty.client_ssl_context())
    config = write_config(tmp_path, health)
    link_wait = 0.5
    with running_bot(
        database_url, config=config, pagerduty=pd, background=True, page_link_wait=link_wait
    ) as bot:
        deploy_and_verify(bot)
        bot.bot.publisher.flush()
        bot.fake.outage("chat.postMessage", times=10_000)  # Slack is down from here on
        bot.fake.outage("chat.update", times=10_000)
        health.healthy = False
        bot.click("U0DEPLOYER", ActionId.RUN_PROBES, "1", reply="probe")
        bot.wait_state(1, SessionState.FAILED)
        failed_at = time.monotonic()
        trigger = pagerduty.wait_for_events(1, timeout=20)[0]
        waited = time.monotonic() - failed_at
        assert trigger["event_action"] == "trigger"
        assert waited < link_wait + 5, f"the page waited {waited:.1f}s for Slack"
        assert bot.fake.messages("#incidents") == []
        # No incident thread to link to: the page carries the session's link only.
        assert [link["text"] for link in trigger["links"]] == ["Deploy session #1"]
