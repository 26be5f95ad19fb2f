"""`deploybot serve` refuses to start, with one clear line, when something is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.ops.settings import get_settings
from bot.storage.db import upgrade
from tests.support.slack import FakeSlack

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
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


def test_database_not_migrated(env: dict[str, str]) -> None:
    code, stderr = serve()
    assert code == 1
    assert "run `deploybot db upgrade`" in stderr


def test_starts_once_everything_is_right(env: dict[str, str]) -> None:
    """With the database migrated the checks pass; the server itself is covered end to end."""
    from bot.server import create_bot

    upgrade(env["DATABASE_URL"])
    bot = create_bot(get_settings())
    try:
        assert bot.runtime.config.environments.keys() == {"staging"}
    finally:
        bot.close()
