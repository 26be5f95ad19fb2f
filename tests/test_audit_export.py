"""``deploybot audit export`` on SQLite and PostgreSQL: rows from a date on, of one
environment if asked, as JSON Lines or CSV, streamed in batches."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bot.app.sessions import DeployService
from bot.cli import app
from bot.config.loader import load_config
from bot.domain.commands import Abort, SignOff
from bot.storage import history
from bot.storage.history import audit_rows
from tests.e2e import EXAMPLES

runner = CliRunner()
OCTOBER = datetime(2026, 10, 30, 9, tzinfo=UTC)
NOVEMBER = datetime(2026, 11, 2, 9, tzinfo=UTC)


def seed(session_factory: sessionmaker[Session]) -> None:
    """An October deploy, then a November one with a sign-off, an abort and a lock."""
    now = [OCTOBER]
    service = DeployService(
        config=load_config(EXAMPLES / "minimal.yaml"),
        session_factory=session_factory,
        clock=lambda: now[0],
    )
    old = service.open(environment="staging", user_id="U0DEPLOYER", service="api", version="1")
    assert old.id is not None
    service.act(old.id, Abort("too early"), "U0DEPLOYER")
    now[0] = NOVEMBER
    new = service.open(environment="staging", user_id="U0DEPLOYER", service="api", version="2")
    assert new.id is not None
    now[0] = NOVEMBER + timedelta(minutes=5)
    service.act(new.id, SignOff("qa-lead"), "U0APPROVER1")
    service.lock(environment="staging", user_id="U0DEPLOYER", reason="db maintenance")


def test_jsonl_from_a_date_with_service_and_version(
    engine: Engine, session_factory: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    seed(session_factory)
    target = tmp_path / "audit.jsonl"
    result = runner.invoke(
        app,
        ["audit", "export", "--since", "2026-11-01", "--output", str(target)]
        + ["--database-url", database_url],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["event"] for r in rows] == ["session_opened", "signed_off", "environment_locked"]
    opened, signed, locked = rows
    assert (opened["session_id"], opened["service"], opened["version"]) == (2, "api", "2")
    assert opened["time"] == "2026-11-02T09:00:00+00:00"
    assert (signed["actor"], signed["detail"]["key"]) == ("U0APPROVER1", "qa-lead")
    assert (locked["session_id"], locked["environment"], locked["service"]) == (
        None,
        "staging",
        None,
    )
    assert locked["detail"] == {"reason": "db maintenance"}
    assert "Exported 3 audit event(s)" in result.output


def test_csv_to_stdout_of_one_environment(
    engine: Engine, session_factory: sessionmaker[Session], database_url: str
) -> None:
    seed(session_factory)
    args = ["audit", "export", "--since", "2026-10-01", "--format", "csv"]
    result = runner.invoke(app, [*args, "--environment", "staging", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    lines = result.stdout[result.stdout.index("session_id,") :]
    table = list(csv.DictReader(io.StringIO(lines)))
    assert [r["event"] for r in table] == [
        "session_opened",
        "session_aborted",
        "state_changed",
        "session_opened",
        "signed_off",
        "environment_locked",
    ]
    assert table[1]["detail"] == '{"reason": "too early"}'
    assert table[-1]["session_id"] == ""
    other = runner.invoke(
        app, [*args, "--environment", "prod", "--database-url", database_url]
    ).stdout
    assert other.startswith("session_id,environment,service,version,actor,event,time,detail")
    assert len(other.strip().splitlines()) == 1


def test_rows_come_in_order_across_batches(
    engine: Engine,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With batches of two rows, the six rows still come whole and in order."""
    seed(session_factory)
    monkeypatch.setattr(history, "EXPORT_BATCH", 2)
    rows = audit_rows(engine, since=OCTOBER)
    first = next(rows)
    assert first.event == "session_opened" and first.version == "1"
    assert len(list(rows)) == 5
    rows.close()


def test_a_bad_date_says_how_to_write_it(database_url: str, engine: Engine) -> None:
    result = runner.invoke(
        app, ["audit", "export", "--since", "last week", "--database-url", database_url]
    )
    assert result.exit_code == 1
    assert "is not a date: write it as 2026-11-01" in result.output
