"""The command line as a newcomer meets it: help, version, unset variables, one-line errors."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config.env_refs import env_var_refs
from bot.config.loader import load_config
from bot.storage.db import upgrade

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MINIMAL = str(EXAMPLES / "minimal.yaml")
runner = CliRunner()

# Every kind of key that names an environment variable, twice for one of them.
NAMING = """\
roles:
  deployers: [U0DEPLOYER]
probes:
  api:
    kind: http
    url: https://api.example/health
    headers_from_env: {Authorization: API_TOKEN}
  db:
    kind: sql
    url_env: ORDERS_DB_URL
  script:
    kind: command
    argv: [./check.sh]
    env: [CHECK_SECRET]
environments:
  prod:
    channel: '#deploys'
    checklist: checklist.yaml
    starters: [deployers]
    pagerduty: {routing_key_env: PD_ROUTING_KEY_PROD}
    rollback:
      - kind: command
        argv: [./rollback.sh]
        env: [ROLLBACK_TOKEN, PD_ROUTING_KEY_PROD]
"""
NAMED = ("API_TOKEN", "ORDERS_DB_URL", "CHECK_SECRET", "PD_ROUTING_KEY_PROD", "ROLLBACK_TOKEN")


@pytest.fixture
def naming_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in NAMED:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "checklist.yaml").write_text(
        "title: Release\nsections:\n  - title: Go\n    items: [{text: Ship it}]\n", encoding="utf-8"
    )
    config = tmp_path / "deploybot.yaml"
    config.write_text(NAMING, encoding="utf-8")
    return config


def test_every_key_typed_as_a_variable_name_is_found(naming_config: Path) -> None:
    refs = [(r.name, r.where) for r in env_var_refs(load_config(naming_config))]
    assert refs == [
        ("API_TOKEN", "probes.api.headers_from_env.Authorization"),
        ("ORDERS_DB_URL", "probes.db.url_env"),
        ("CHECK_SECRET", "probes.script.env[0]"),
        ("PD_ROUTING_KEY_PROD", "environments.prod.pagerduty.routing_key_env"),
        ("ROLLBACK_TOKEN", "environments.prod.rollback[0].env[0]"),
        ("PD_ROUTING_KEY_PROD", "environments.prod.rollback[0].env[1]"),
    ]


def test_config_check_warns_of_every_unset_variable_and_passes(naming_config: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(naming_config)])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.stdout
    warnings = result.stderr.splitlines()
    assert len(warnings) == 5, warnings
    for name in NAMED:
        assert sum(name in line for line in warnings) == 1, name
    assert warnings[3] == (
        f"warning: {naming_config}: environment variable PD_ROUTING_KEY_PROD is not set "
        "(named by environments.prod.pagerduty.routing_key_env, "
        "environments.prod.rollback[0].env[1])"
    )


def test_an_env_file_and_the_environment_count_as_set(
    naming_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        "# production\nAPI_TOKEN=t\nexport ORDERS_DB_URL='postgresql://db/orders'\n"
        "CHECK_SECRET=s\nPD_ROUTING_KEY_PROD=k\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ROLLBACK_TOKEN", "r")
    args = ["config", "check", str(naming_config), "--env-file", str(env_file)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""

    missing = runner.invoke(app, ["config", "check", str(naming_config), "--env-file", "nope"])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: can't read nope: No such file or directory"


def test_config_check_of_a_file_that_is_not_utf8_is_one_located_line(tmp_path: Path) -> None:
    config = tmp_path / "deploybot.yaml"
    config.write_bytes(b"roles:\n  deployers: [U0DEPLOYER]  # caf\xe9\n")
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{config}:2: not UTF-8 text (byte 0xe9): save the file as UTF-8",
        "1 error(s).",
    ]


def test_a_checklist_that_is_not_utf8_is_one_located_line(tmp_path: Path) -> None:
    text = Path(MINIMAL).read_text(encoding="utf-8")
    config = tmp_path / "deploybot.yaml"
    config.write_text(text.replace("checklists/minimal.yaml", "runbook.md"), encoding="utf-8")
    (tmp_path / "runbook.md").write_bytes(b"# Release\n\n- [ ] Ship \xff\n")
    result = runner.invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 1
    assert "runbook.md:3: not UTF-8 text (byte 0xff)" in result.stderr
    assert "Traceback" not in result.output


def test_checklist_import_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    runbook = EXAMPLES / "runbooks" / "mailflow-production-checklist.md"
    target = tmp_path / "nonexistent" / "x.yaml"
    result = runner.invoke(app, ["checklist", "import", str(runbook), "-o", str(target)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: can't write {target}: No such file or directory"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", ["report 1", "sessions"])
def test_a_missing_database_is_named_and_not_created(tmp_path: Path, command: str) -> None:
    database = tmp_path / "deploybot.db"
    url = f"sqlite:///{database}"
    result = runner.invoke(app, [*command.split(), "-c", MINIMAL, "--database-url", url])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: there is no database at {database}: "
        f"run `deploybot db upgrade --database-url '{url}'` first"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unmigrated_database_says_to_upgrade_it(tmp_path: Path) -> None:
    database = tmp_path / "deploybot.db"
    database.touch()  # there, but empty: never migrated
    url = f"sqlite:///{database}"
    result = runner.invoke(app, ["report", "1", "-c", MINIMAL, "--database-url", url])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: the database schema is not current: "
        f"run `deploybot db upgrade --database-url '{url}'` first"
    )


def test_sessions_lists_what_report_takes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    upgrade(url)
    args = ["-c", MINIMAL, "--database-url", url]
    empty = runner.invoke(app, ["sessions", *args])
    assert empty.exit_code == 0, empty.output
    assert empty.stderr.strip() == "No open deploys."

    from bot.runtime import build_runtime

    service = build_runtime(config_path=MINIMAL, database_url=url).service
    opened = service.open(environment="staging", user_id="U0DEPLOYER", version="v1.2")
    listed = runner.invoke(app, ["sessions", *args], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "staging" in line)
    cells = [cell.strip() for cell in row.split("│")]
    assert cells[1:3] == [str(opened.id), "staging"]


def test_help_speaks_to_users_and_version_comes_from_the_package() -> None:
    helped = runner.invoke(app, ["--help"])
    assert helped.exit_code == 0
    assert "deploybot runs production deploys" in helped.stdout
    assert "Each command prints one clear line" not in helped.stdout  # the developers' note

    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0
    assert shown.stdout.strip() == f"deploybot {version('deploybot')}"


def test_config_check_help_says_which_file_it_checks() -> None:
    result = runner.invoke(app, ["config", "check", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "else the file $DEPLOYBOT_CONFIG names, else ./deploybot.yaml" in result.stdout
    assert "--env-file" in result.stdout
