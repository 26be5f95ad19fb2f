"""`deploybot serve` refuses to start, with one clear line, when something is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.ops.settings import get_settings
from bot.storage.db import upgrade
from tests.support.slack import FakeSlack

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
runner = CliRunner()


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeSlack) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    values = {
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_API_URL": fake.base_url,
        "DATABASE_URL": url,
        "DEPLOYBOT_CONFIG": str(EXAMPLES / "minimal.yaml"),
        "PORT": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


def serve() -> tuple[int, str]:
    result = runner.invoke(app, ["serve"])
    return result.exit_code, result.stderr


def test_missing_token(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    code, stderr = serve()
    assert code == 1
    assert stderr.strip() == "error: SLACK_BOT_TOKEN is not set: give the bot's xoxb- token."


def test_missing_signing_secret_in_http_mode(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "")
    code, stderr = serve()
    assert code == 1
    assert "SLACK_SIGNING_SECRET is not set" in stderr


def test_token_refused_by_slack(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fake: FakeSlack
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked")
    code, stderr = serve()
    assert code == 1
    assert stderr.strip() == "error: Slack refused SLACK_BOT_TOKEN (invalid_auth): check the token."
    assert fake.last("auth.test").headers["authorization"] == "Bearer xoxb-revoked"


def test_slack_unreachable(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:1/api/")
    code, stderr = serve()
    assert code == 1
    assert stderr.startswith("error: can't reach Slack at http://127.0.0.1:1/api/")


def test_invalid_config(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles: {}\nenvironments: {prod: {channel: '#x'}}\n", encoding="utf-8")
    monkeypatch.setenv("DEPLOYBOT_CONFIG", str(bad))
    code, stderr = serve()
    assert code == 1
    assert "bad.yaml:2: environments.prod" in stderr
    assert stderr.strip().endswith("error: the config is invalid; deploybot will not start.")


def test_database_not_migrated(env: dict[str, str], tmp_path: Path) -> None:
    code, stderr = serve()
    assert code == 1
    database = tmp_path / "deploybot.db"
    assert stderr.strip() == (
        f"error: there is no database at {database}: run `deploybot db upgrade`"
    )
    assert not database.exists()  # no empty file left behind

    database.touch()
    code, stderr = serve()
    assert code == 1
    assert stderr.strip() == (
        "error: the database schema is not current: run `deploybot db upgrade`"
    )


def test_starts_once_everything_is_right(env: dict[str, str]) -> None:
    """With the database migrated the checks pass; the server itself is covered end to end."""
    from bot.server import create_bot

    upgrade(env["DATABASE_URL"])
    bot = create_bot(get_settings())
    try:
        assert bot.runtime.config.environments.keys() == {"staging"}
    finally:
        bot.close()


def test_a_running_bot_logs_json_lines_quietly(tmp_path: Path, fake: FakeSlack) -> None:
    """A real process: every line on stderr is JSON (the libraries' too), becoming the leader
    is news, not a warning, no routine line repeats at every sync, and one warning names
    the variables the config names that are unset."""
    url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    upgrade(url)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DEPLOYBOT_", "PAGERDUTY_"))
    }
    env.update(
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=fake.base_url,
        DATABASE_URL=url,
        DEPLOYBOT_CONFIG=str(EXAMPLES / "minimal.yaml"),
        PORT="0",
        DEPLOYBOT_SCHEDULER_POLL="0.05",
        DEPLOYBOT_SCHEDULER_SYNC="0.1",  # a sync every 0.1 s: ten in the second watched
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "listening on" not in log.read_text(encoding="utf-8"):
            assert process.poll() is None, log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.1)
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    lines = log.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert stdout == b""
    levels = {(r["level"], r["message"].split(" (")[0]) for r in records}
    assert ("INFO", "became the scheduler leader") in levels
    assert not [r for r in records if r["level"] == "WARNING" and "leader" in r["message"]]
    info = [r["message"] for r in records if r["level"] in ("INFO", "DEBUG")]
    assert len(info) == len(set(info)), info  # nothing said again at each sync
    assert len(records) < 12, lines
    unset = [r for r in records if "unset_env" in r]
    assert len(unset) == 1, lines
    assert unset[0]["level"] == "WARNING"
    assert unset[0]["unset_env"] == ["PAGERDUTY_ROUTING_KEY_STAGING"]
    assert "PAGERDUTY_ROUTING_KEY_STAGING" in unset[0]["message"]
