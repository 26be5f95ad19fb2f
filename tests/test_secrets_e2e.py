"""Secrets never leave: a rollback command that echoes its token, a probe that prints keys.

The real bot on loopback (``tests.e2e.running_bot``) with the Slack and PagerDuty stand-ins;
after the run, everything that left the process or was stored is searched for the secret:
every call the Slack stand-in received, every audit row, every outbox row's payload, the
report (Markdown and JSON), and every event PagerDuty received.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app.report import report_json, report_markdown
from bot.domain import SessionState
from bot.integrations.pagerduty import DETAIL_LIMIT, page_payload
from bot.ops.redact import MASK
from bot.rendering.ids import ActionId
from bot.storage.db import upgrade
from bot.storage.models import OutboxRow
from tests.e2e import RunningBot, running_bot
from tests.support.health import HealthEndpoint
from tests.support.pagerduty import FakePagerDuty
from tests.test_paging import ROUTING_KEY_ENV, drain, enqueue, make_pagerduty, make_worker
from tests.test_rollback_e2e import (
    ROUTING_KEY,
    deploy_and_verify,
    incident_replies,
    pd_client,
    probe_until_failed,
    wait_settled,
    write_config,
)

# Shaped like nothing the redactor knows: only masking by value can catch it.
ROLLBACK_TOKEN = "opal-harbor-9431"


@pytest.fixture
def paging(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePagerDuty]:
    monkeypatch.setenv("PD_KEY_PROD", ROUTING_KEY)
    with FakePagerDuty() as fake:
        yield fake


def everything_that_left(bot: RunningBot, paging: FakePagerDuty) -> dict[str, str]:
    """Each place a secret could end up, as text."""
    service = bot.bot.runtime.service
    session = service.get(1)
    history, runs = service.history(1), service.probe_runs(1)
    with bot.bot.runtime.session_factory() as db:
        outbox = [row.payload for row in db.scalars(select(OutboxRow)).all()]
    return {
        "slack": json.dumps([call.params for call in bot.fake.calls()]),
        "audit": json.dumps([[e.kind, e.actor, e.data] for e in history], default=str),
        "outbox": json.dumps(outbox, default=str),
        "report": report_markdown(session, history, runs),
        "report json": json.dumps(report_json(session, history, runs)),
        "pagerduty": json.dumps(paging.events()),
        "probe runs": json.dumps([[r.summary, r.detail] for r in runs]),
    }


def echoing_rollback(tmp_path: Path, health: HealthEndpoint, *, exit_code: int) -> dict[str, Any]:
    """``echo $ROLLBACK_TOKEN``, heal the service, exit with ``exit_code``."""
    script = tmp_path / "rollback.py"
    script.write_text(
        "import os, sys, urllib.request\n"
        f"urllib.request.urlopen({health.url + '/heal'!r})\n"
        "print(os.environ['ROLLBACK_TOKEN'], file=sys.stdout if "
        f"{exit_code} == 0 else sys.stderr)\n"
        f"sys.exit({exit_code})\n",
        encoding="utf-8",
    )
    return {
        "kind": "command",
        "argv": [sys.executable, str(script)],
        "env": ["ROLLBACK_TOKEN"],
        "timeout": "30s",
    }


@pytest.mark.parametrize(
    ("exit_code", "settled", "reply"),
    [
        (0, SessionState.ROLLED_BACK, f":white_check_mark: Step 1: {{argv}}: exit 0: {MASK}"),
        (
            3,
            SessionState.ROLLBACK_FAILED,
            f"Rollback failed: step 1 failed: {{argv}}: exit 3: {MASK}",
        ),
    ],
)
def test_a_rollback_command_that_echoes_its_token_leaks_it_nowhere(
    database_url: str,
    tmp_path: Path,
    paging: FakePagerDuty,
    health: HealthEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    exit_code: int,
    settled: SessionState,
    reply: str,
) -> None:
    upgrade(database_url)
    monkeypatch.setenv("ROLLBACK_TOKEN", ROLLBACK_TOKEN)
    rollback = echoing_rollback(tmp_path, health, exit_code=exit_code)
    config = write_config(
        tmp_path,
        probe={"kind": "http", "url": f"{health.url}/health", "timeout": "3s"},
        rollback=[rollback],
    )
    with running_bot(
        database_url, config=config, pagerduty=pd_client(paging), background=True
    ) as bot:
        deploy_and_verify(bot)
        health.check = lambda: False
        probe_until_failed(bot)
        paging.wait_for_events(1, timeout=20)
        bot.click("U0ONCALL", ActionId.ROLL_BACK, "1", reply="rb")
        wait_settled(bot, settled)
        replies = incident_replies(bot, 2)
        bot.bot.publisher.flush()
        left = everything_that_left(bot, paging)

    # The step's output did reach the thread, masked ...
    argv = " ".join(rollback["argv"])
    assert any(reply.format(argv=argv) in text for text in replies), replies
    # ... and the token is nowhere.
    for where, text in left.items():
        assert ROLLBACK_TOKEN not in text, where


def test_a_rollback_step_that_crashes_on_its_token_logs_it_masked(
    database_url: str,
    tmp_path: Path,
    paging: FakePagerDuty,
    health: HealthEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upgrade(database_url)
    monkeypatch.setenv("ROLLBACK_TOKEN", ROLLBACK_TOKEN)
    config = write_config(
        tmp_path,
        probe={"kind": "http", "url": f"{health.url}/health", "timeout": "3s"},
        rollback=[echoing_rollback(tmp_path, health, exit_code=0)],
    )

    def crash(target: object) -> str:
        raise RuntimeError(f"cannot authenticate with {os.environ['ROLLBACK_TOKEN']}")

    with running_bot(
        database_url, config=config, pagerduty=pd_client(paging), background=True
    ) as bot:
        bot.bot.rollbacks.run_step = crash
        deploy_and_verify(bot)
        health.check = lambda: False
        probe_until_failed(bot)
        bot.click("U0ONCALL", ActionId.ROLL_BACK, "1", reply="rb")
        wait_settled(bot, SessionState.ROLLBACK_FAILED)
        left = everything_that_left(bot, paging)

    crashed = [r for r in caplog.records if r.getMessage().startswith("rollback step crashed")]
    assert (
        crashed and "RuntimeError: cannot authenticate with [REDACTED]" in crashed[0].getMessage()
    )
    assert ROLLBACK_TOKEN not in caplog.text
    for where, text in left.items():
        assert ROLLBACK_TOKEN not in text, where


# --- PagerDuty: summary, severity, links, and the probe's detail redacted and capped -------

GITHUB_TOKEN = "ghp_R8kzQ2mVx7LpA9sWc4TnB6yHd1uJe3fG5oIq"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Kf3Tb1x"
PEM_BODY = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2q9sKc8Vb1wXyZ"
PROBE_SECRETS = [GITHUB_TOKEN, AWS_SECRET, "hunter2-xyz", PEM_BODY]
SECRET_OUTPUT = (
    f"cloning with {GITHUB_TOKEN}\n"
    f"default {AWS_SECRET} shared\n"
    "connect password=hunter2-xyz sslmode=require\n"
    f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\n"
)


def test_a_page_carries_its_details_redacted_and_capped(
    session_factory: sessionmaker[Session],
) -> None:
    detail = SECRET_OUTPUT + "health check output line\n" * 200
    payload = page_payload(
        action="trigger",
        env_name="prod",
        routing_key_env=ROUTING_KEY_ENV,
        session_id=7,
        probe="api",
        summary=f"prod api v2: api failed: token {GITHUB_TOKEN} refused",
        severity="critical",
        details={"detail": detail},
        link="https://example.slack.com/archives/C1/p1",
    )
    # A row written before this rule (its payload unfitted) is fitted on the way out too.
    legacy = {**payload, "dedup_key": "deploybot/prod/session-7/legacy"}
    legacy["summary"] = f"legacy: password={PROBE_SECRETS[2]}"
    legacy["custom_details"] = {"detail": detail, "lines": [AWS_SECRET]}
    with FakePagerDuty() as receiver:
        for row in (payload, legacy):
            enqueue(session_factory, row)
        drain(make_worker(session_factory, make_pagerduty(receiver)), session_factory)
        events = receiver.events()

    assert len(events) == 2
    for event in events:
        sent = json.dumps(event)
        for secret in PROBE_SECRETS:
            assert secret not in sent
        custom = event["payload"]["custom_details"]
        assert len(custom["detail"]) == DETAIL_LIMIT and custom["detail"].endswith("…")
        assert MASK in custom["detail"] and MASK in event["payload"]["summary"]
    assert events[0]["links"] == [
        {"href": "https://example.slack.com/archives/C1/p1", "text": "Deploy session #7"}
    ]


def failing_probe(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    """A command probe that passes until ``broken`` exists, then prints secrets and fails."""
    broken = tmp_path / "broken"
    script = tmp_path / "probe.py"
    script.write_text(
        "import pathlib, sys\n"
        f"if not pathlib.Path({str(broken)!r}).exists():\n"
        "    print('ok'); sys.exit(0)\n"
        f"sys.stdout.write({SECRET_OUTPUT!r} + 'x' * 700)\n"
        "sys.exit(1)\n",
        encoding="utf-8",
    )
    return {"kind": "command", "argv": [sys.executable, str(script)], "timeout": "10s"}, broken


def test_a_failing_probe_pages_with_its_detail_redacted_and_capped_and_nothing_more(
    database_url: str, tmp_path: Path, paging: FakePagerDuty
) -> None:
    upgrade(database_url)
    probe, broken = failing_probe(tmp_path)
    config = write_config(tmp_path, probe=probe, rollback=[])
    with running_bot(
        database_url, config=config, pagerduty=pd_client(paging), background=True
    ) as bot:
        deploy_and_verify(bot)
        broken.touch()
        probe_until_failed(bot)
        trigger = paging.wait_for_events(1, timeout=20)[0]
        bot.bot.publisher.flush()
        left = everything_that_left(bot, paging)

    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"].startswith("prod api v2: api failed: exit 1")
    assert [link["text"] for link in trigger["links"]] == [
        "Incident thread in Slack",
        "Deploy session #1",
    ]
    custom = payload["custom_details"]
    assert set(custom) == {"detail", "environment", "session_id", "probe", "outbox_id"}
    assert custom["detail"].startswith(f"$ {sys.executable} ")
    assert MASK in custom["detail"]
    assert len(custom["detail"]) <= DETAIL_LIMIT
    for where, text in left.items():
        for secret in PROBE_SECRETS:
            assert secret not in text, (where, secret)
