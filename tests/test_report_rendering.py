"""The deployment report's Slack message (issue 11, item 18): pure Block Kit within Slack's
limits however long the session's history, mentions and <!date> times, and readable times
in the Markdown and JSON files."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from bot.app.report import report_json, report_markdown
from bot.domain import SessionState
from bot.rendering.limits import MAX_MESSAGE_BLOCKS, validate_message
from bot.rendering.report import report_blocks, report_filenames, report_text
from bot.storage.probe_runs import ProbeRun
from bot.storage.repositories import AuditEntry
from tests.test_domain import NOW, make_session


def entry(n: int, kind: str, actor: str = "U0ONCALL", **data: object) -> AuditEntry:
    at = NOW + timedelta(seconds=n, microseconds=123_456)
    return AuditEntry(n, 7, "prod", actor, kind, dict(data), at)


def run(n: int, probe: str, ok: bool) -> ProbeRun:
    at = NOW + timedelta(seconds=n, microseconds=654_321)
    summary = "HTTP 200" if ok else "HTTP 503 " + "x" * 300
    return ProbeRun(n, 7, "prod", probe, "1.1", "http", ok, "critical", summary, "", 12, at)


def test_a_long_report_fits_one_message_and_points_to_the_files() -> None:
    session = make_session(SessionState.FAILED)
    history = [entry(0, "session_opened", "U0DEPLOYER")]
    history += [
        entry(i, "probe_failed", "deploybot", probe=f"p{i}", summary="y" * 500)
        for i in range(1, 400)
    ]
    runs = [run(i, f"probe-{i % 120}", ok=i % 3 != 0) for i in range(600)]
    blocks = report_blocks(session, history, runs)
    validate_message(blocks, text=report_text(session))
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    text = json.dumps(blocks)
    assert "more probes (see the files)" in text
    assert "more events (see the files)" in text
    assert "`deploy-7-report.md` (Markdown) and `deploy-7-report.json` (JSON)" in text
    assert "<@U0DEPLOYER>" in text and "<!date^" in text


def test_the_files_show_times_to_the_second_in_utc() -> None:
    session = make_session(SessionState.ABORTED)
    session.closed_at = NOW + timedelta(minutes=5, microseconds=5)
    history = [entry(1, "session_opened", "U0DEPLOYER")]
    runs = [run(2, "api", ok=True)]
    data = report_json(session, history, runs)
    assert data["opened_at"] == "2026-11-23T12:00:00Z"
    assert data["closed_at"] == "2026-11-23T12:05:00Z"
    assert data["timeline"][0]["at"] == "2026-11-23T12:00:01Z"
    assert data["probe_runs"][0]["at"] == "2026-11-23T12:00:02Z"
    markdown = report_markdown(session, history, runs)
    assert "| Started | 2026-11-23T12:00:00Z |" in markdown
    assert not re.search(r"\.\d{6}", markdown)
    assert report_filenames(session) == ("deploy-7-report.md", "deploy-7-report.json")
