"""A metric probe as people see it: the Slack item's line and dashboard link, the report's
list of every measurement, and the values a page carries in ``custom_details``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from bot.app.probe_rounds import dashboard_links
from bot.app.report import report_json, report_markdown
from bot.config.loader import load_config
from bot.config.probe_specs import ProbeSpec, PrometheusProbe
from bot.domain import SYSTEM, ItemStatus, SessionState
from bot.domain.checklist import ChecklistItem
from bot.domain.session import ItemProgress
from bot.integrations.pagerduty import page_payload
from bot.integrations.probes.analysis import Measurement, outcome, page_details
from bot.rendering.checklist import status_line
from bot.rendering.times import clock
from bot.storage.probe_runs import ProbeRun
from tests.test_domain import NOW, make_session

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def spec(**fields: Any) -> PrometheusProbe:
    probe = TypeAdapter(ProbeSpec).validate_python(
        {
            "kind": "prometheus",
            "url": "http://prometheus:9090",
            "query": 'rate(errors{service="{{service}}"}[5m])',
            "condition": "result < 0.01",
            "count": 3,
            "interval": "1m",
            "timeout": "4m",
            "failure_limit": 1,
        }
        | fields
    )
    assert isinstance(probe, PrometheusProbe)
    return probe


def failed_detail() -> str:
    measurements = [
        Measurement("failed", "error rate: 0.02 < 0.01 ✗", AT),
        Measurement("passed", "error rate: 0.004 < 0.01 ✓", AT + timedelta(minutes=1)),
        Measurement("failed", "error rate: 0.03 < 0.01 ✗", AT + timedelta(minutes=2)),
    ]
    result = outcome(spec(), {"result": 'rate(errors{service="api"}[5m])'}, measurements)
    assert not result.ok
    return result.detail


def test_the_item_line_shows_value_condition_verdict_and_the_dashboard() -> None:
    item = ChecklistItem(id="3.1", text="Error rate is low", probe="errors")
    passed = ItemProgress(ItemStatus.DONE, SYSTEM.user_id, NOW, "error rate: 0.004 < 0.01 ✓")
    link = "https://grafana.example/d/x?var-service=api&from=now-1h"
    assert status_line(item, passed, link=link) == (
        "✅ 3.1 probe passed: error rate: 0.004 &lt; 0.01 ✓"
        " · <https://grafana.example/d/x?var-service=api&amp;from=now-1h|dashboard>"
        f" · {clock(NOW)}"
    )
    assert status_line(item, passed) == (
        f"✅ 3.1 probe passed: error rate: 0.004 &lt; 0.01 ✓ · {clock(NOW)}"
    )
    # A URL that would break the link's syntax is not shown.
    assert "dashboard" not in status_line(item, passed, link="https://x/a|b")
    by_person = ItemProgress(ItemStatus.DONE, "U0DEPLOYER", NOW)
    assert "dashboard" not in status_line(item, by_person, link=link)


def test_dashboard_links_are_filled_with_the_session_and_the_quoted_query(tmp_path: Path) -> None:
    (tmp_path / "checklist.yaml").write_text(
        "title: T\nsections:\n  - title: Checks\n    items:\n"
        "      - text: Errors are low\n        probe: errors\n"
        "      - text: Canary is no worse\n        probe: canary\n"
    )
    config_file = tmp_path / "deploybot.yaml"
    config_file.write_text(
        """
roles:
  deployers: [U0DEPLOYER]
probes:
  errors:
    kind: prometheus
    url: http://prometheus:9090
    query: rate(errors{service="{{service}}"}[5m])
    condition: result < 0.01
    dashboard_url: "http://prometheus:9090/graph?g0.expr={{query}}&env={{environment}}"
  canary:
    kind: prometheus
    url: http://prometheus:9090
    baseline: errors{version="{{previous_version}}"}
    canary: errors{version="{{version}}"}
    condition: canary <= baseline * 1.2
    dashboard_url: "https://grafana.example/d/x?version={{previous_version}}"
environments:
  prod:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
"""
    )
    config = load_config(config_file)
    session = make_session(SessionState.DEPLOYING)
    session.checklist = config.checklist("prod")
    session.service = "api"
    links = dashboard_links(config, session)
    assert links == {
        "1.1": "http://prometheus:9090/graph?g0.expr="
        "rate%28errors%7Bservice%3D%22api%22%7D%5B5m%5D%29&env=prod"
    }  # the canary's link names the previous version, which is not looked up for links


def test_a_page_carries_the_values_the_condition_and_the_verdict() -> None:
    detail = failed_detail()
    details = page_details(detail)
    assert details == {
        "query": 'rate(errors{service="api"}[5m])',
        "condition": "result < 0.01",
        "verdict": "failed",
        "measurements": "12:00:00 failed: error rate: 0.02 < 0.01 ✗\n"
        "12:01:00 passed: error rate: 0.004 < 0.01 ✓\n"
        "12:02:00 failed: error rate: 0.03 < 0.01 ✗",
        "last_measurement": "12:02:00 failed: error rate: 0.03 < 0.01 ✗",
    }
    payload = page_payload(
        action="trigger",
        routing_key_env="PD_KEY",
        env_name="prod",
        session_id=7,
        probe="errors",
        summary="errors failed",
        severity="critical",
        details={"detail": detail, **details},
        link=None,
    )
    assert payload["custom_details"]["last_measurement"].endswith("0.03 < 0.01 ✗")
    assert page_details("HTTP/1.1 503 Service Unavailable\n\nbody") == {}
    # Many measurements: the latest that fit are kept.
    many = page_details(detail, limit=60)
    assert many["measurements"] == "12:02:00 failed: error rate: 0.03 < 0.01 ✗"


def test_the_report_lists_every_measurement() -> None:
    session = make_session(SessionState.FAILED)
    run = ProbeRun(
        1, 7, "prod", "errors", "1.1", "prometheus", False, "critical",
        "failed: 1 passed, 2 failed, 0 inconclusive of 3; last error rate: 0.03 < 0.01 ✗",
        failed_detail(), 180_000, NOW,
    )  # fmt: skip
    data = report_json(session, [], [run])
    assert data["probe_runs"][0]["analysis"]["measurements"] == [
        {"at": "12:00:00", "phase": "failed", "seen": "error rate: 0.02 < 0.01 ✗"},
        {"at": "12:01:00", "phase": "passed", "seen": "error rate: 0.004 < 0.01 ✓"},
        {"at": "12:02:00", "phase": "failed", "seen": "error rate: 0.03 < 0.01 ✗"},
    ]
    markdown = report_markdown(session, [], [run])
    section = markdown.split("### Metric analyses\n", 1)[1].split("\n## ", 1)[0]
    assert section.strip().splitlines() == [
        "#### errors at 2026-11-23T12:00:00Z: failed",
        "",
        '- query: `rate(errors{service="api"}[5m])`',
        "- condition: `result < 0.01`",
        "  1. 12:00:00 failed: error rate: 0.02 < 0.01 ✗",
        "  2. 12:01:00 passed: error rate: 0.004 < 0.01 ✓",
        "  3. 12:02:00 failed: error rate: 0.03 < 0.01 ✗",
    ]
    http = ProbeRun(2, 7, "prod", "api", "1.2", "http", True, "critical", "HTTP 200", "", 3, NOW)
    assert "analysis" not in report_json(session, [], [http])["probe_runs"][0]
