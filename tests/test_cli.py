"""The deploybot command line: what a person types and what comes back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.app.sessions import DeployService
from bot.cli import app
from bot.config.loader import load_config
from bot.domain.commands import SignOff, SkipItem, TickItem
from bot.storage.db import make_engine, make_sessionmaker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MINIMAL = str(EXAMPLES / "minimal.yaml")
runner = CliRunner()


def test_config_check_valid_prints_one_line_summary() -> None:
    result = runner.invoke(app, ["config", "check", MINIMAL])
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines() == [
        f"{MINIMAL} is valid: 1 environment (staging), 3 roles, 1 probe, 5 checklist items."
    ]


def test_config_check_reports_every_error_with_location(tmp_path: Path) -> None:
    bad = tmp_path / "deploybot.yaml"
    bad.write_text(
        "roles:\n"
        "  deployers: [U0DEPLOYER]\n"
        "environments:\n"
        "  prod:\n"
        "    channel: '#deploys'\n"
        "    checklist: missing.yaml\n"
        "    starters: [nobody]\n"
        "    colour: blue\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 1
    errors = result.stderr
    assert "deploybot.yaml:7: environments.prod.starters: unknown role 'nobody'" in errors
    assert "deploybot.yaml:8: environments.prod.colour" in errors
    assert "missing.yaml" in errors
    assert "Traceback" not in errors


def test_checklist_import_json(tmp_path: Path) -> None:
    runbook = EXAMPLES / "runbooks" / "mailflow-production-checklist.md"
    result = runner.invoke(app, ["checklist", "import", str(runbook), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [s["role"] for s in data["signoffs"]] == [
        "Engineering Lead",
        "DevOps Lead",
        "Security Lead",
        "Product Manager",
    ]
    assert sum(len(s["items"]) for s in data["sections"]) == 67
    assert "13 sections, 67 items, 4 sign-offs, 2 suggested probes" in result.stderr


def test_checklist_import_writes_yaml_file(tmp_path: Path) -> None:
    runbook = EXAMPLES / "runbooks" / "oonrumail-production-runbook.md"
    target = tmp_path / "checklist.yaml"
    result = runner.invoke(app, ["checklist", "import", str(runbook), "-o", str(target)])
    assert result.exit_code == 0
    assert "title: Production Deployment Runbook" in target.read_text(encoding="utf-8")
    assert "suggested probes: 22" in result.stderr


@pytest.mark.parametrize(
    "text",
    ["", "# Release\n\nJust prose, no task list.\n", "- plain bullet\n- another\n"],
    ids=["empty", "prose", "bullets"],
)
def test_checklist_import_of_nothing_fails_and_says_what_it_found(
    tmp_path: Path, text: str
) -> None:
    runbook = tmp_path / "runbook.md"
    runbook.write_text(text, encoding="utf-8")
    target = tmp_path / "checklist.yaml"

    result = runner.invoke(app, ["checklist", "import", str(runbook), "-o", str(target)])

    assert result.exit_code == 1
    assert "0 sections, 0 items, 0 sign-offs, 0 suggested probes" in result.stderr
    assert f"error: no checklist items found in {runbook}" in result.stderr
    assert not target.exists()


def test_checklist_import_refuses_a_yaml_checklist(tmp_path: Path) -> None:
    imported = tmp_path / "checklist.yaml"
    runbook = EXAMPLES / "runbooks" / "mailflow-production-checklist.md"
    assert (
        runner.invoke(app, ["checklist", "import", str(runbook), "-o", str(imported)]).exit_code
        == 0
    )
    renamed = tmp_path / "checklist.md"
    renamed.write_text(imported.read_text(encoding="utf-8"), encoding="utf-8")

    for path in (imported, renamed, EXAMPLES / "checklists" / "minimal.yaml"):
        result = runner.invoke(app, ["checklist", "import", str(path)])
        assert result.exit_code == 1, path
        assert "is a YAML checklist, not a Markdown runbook" in result.stderr
        assert result.stdout == ""


SHARED_RUNBOOKS = sorted((Path(__file__).resolve().parents[2] / "shared" / "runbooks").glob("*.md"))
RUNBOOKS = SHARED_RUNBOOKS or sorted((EXAMPLES / "runbooks").glob("*.md"))


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=lambda p: p.stem)
def test_an_imported_checklist_passes_config_check_as_it_is(tmp_path: Path, runbook: Path) -> None:
    target = tmp_path / "checklist.yaml"
    imported = runner.invoke(app, ["checklist", "import", str(runbook), "-o", str(target)])
    assert imported.exit_code == 0, imported.output
    config = tmp_path / "deploybot.yaml"
    config.write_text(
        "roles:\n  deployers: [U0DEPLOYER]\n"
        "environments:\n  prod:\n    channel: '#deploys'\n"
        "    checklist: checklist.yaml\n    starters: [deployers]\n",
        encoding="utf-8",
    )

    result = runner.invoke(app, ["config", "check", str(config)])

    assert result.exit_code == 0, result.output
    assert "is valid: 1 environment (prod)" in result.stdout
    # What the import suggests and the config lacks is listed, not refused.
    assert "suggested probe(s) not in the config" in result.stderr


def test_config_check_and_checklist_show_name_signoff_lines_not_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY_STAGING", "set")
    runbook = tmp_path / "runbook.md"
    runbook.write_text(
        "# Release\n\n- [ ] Tests pass\n\n## Approvals\n\n"
        "- [ ] **QA Lead**: ____ Date: ____\n- [ ] *Release Manager:* ____ Date: ____\n",
        encoding="utf-8",
    )
    config = tmp_path / "deploybot.yaml"
    text = Path(MINIMAL).read_text(encoding="utf-8")
    config.write_text(text.replace("checklists/minimal.yaml", "runbook.md"), encoding="utf-8")
    warning = (
        f"warning: {tmp_path}/runbook.md:8: sign-off 'Release Manager' is not asked for in "
        "environment 'staging': add it to environments.staging.signoffs, or nobody signs it"
    )

    checked = runner.invoke(app, ["config", "check", str(config)])
    shown = runner.invoke(app, ["checklist", "show", "staging", "-c", str(config)])

    assert checked.exit_code == 0, checked.output
    assert checked.stderr.splitlines() == [warning]
    assert shown.exit_code == 0, shown.output
    assert shown.stderr.splitlines() == [warning]


def test_checklist_import_missing_file_is_one_line() -> None:
    result = runner.invoke(app, ["checklist", "import", "nowhere.md"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: can't read nowhere.md: No such file or directory"


def test_checklist_show_renders_sections_and_items() -> None:
    result = runner.invoke(app, ["checklist", "show", "staging", "-c", MINIMAL])
    assert result.exit_code == 0
    assert "Pre-Deployment" in result.stdout
    assert "Post-Deployment (gated: pre-deployment" in result.stdout
    assert "Sign-offs required: QA Lead, DevOps Lead" in result.stdout


def test_checklist_show_is_what_a_session_posts(tmp_path: Path) -> None:
    """Probes no item links to are in the session's "Automated checks" section: shown too."""
    from bot.app.sessions import AUTOMATED, session_checklist

    config = tmp_path / "deploybot.yaml"
    text = Path(MINIMAL).read_text(encoding="utf-8")
    text = text.replace("checklists/minimal.yaml", str(EXAMPLES / "checklists" / "minimal.yaml"))
    text = text.replace(
        "    description: Staging API answers its health check\n",
        "    description: Staging API answers its health check\n"
        "  api-tls:\n    kind: tls\n    host: api.example.com\n"
        "    description: API certificate is valid for 14 days\n",
    )
    config.write_text(text.replace("probes: [api-health]", "probes: [api-health, api-tls]"))
    posted = session_checklist(load_config(config), "staging")

    result = runner.invoke(app, ["checklist", "show", "staging", "-c", str(config)])

    assert result.exit_code == 0, result.output
    assert posted.item_count == 6
    assert "(staging, 6 items)" in result.stdout
    assert AUTOMATED in result.stdout
    assert "3.1 API certificate is valid for 14 days [probe: api-tls]" in result.stdout


def test_checklist_show_unknown_environment() -> None:
    result = runner.invoke(app, ["checklist", "show", "prod", "-c", MINIMAL])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: Unknown environment 'prod'. Known: staging."


def test_db_upgrade_then_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    upgraded = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.stdout.startswith("Database is at revision ")

    service = DeployService(
        config=load_config(MINIMAL),
        session_factory=make_sessionmaker(make_engine(url)),
        clock=lambda: datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
    )
    session = service.open(environment="staging", user_id="U0DEPLOYER", version="v1.2")
    assert session.id is not None
    service.act(session.id, TickItem("1.1"), "U0DEPLOYER")
    service.act(session.id, SkipItem("1.2", "no schema change"), "U0DEPLOYER")
    service.act(session.id, SignOff("qa-lead"), "U0APPROVER1")

    args = ["report", str(session.id), "-c", MINIMAL, "--database-url", url]
    md = runner.invoke(app, args)
    assert md.exit_code == 0, md.output
    assert f"# Deployment report #{session.id}: staging v1.2" in md.stdout
    assert "| QA Lead | U0APPROVER1 | 2026-11-23T09:30:00Z |" in md.stdout
    assert "| DevOps Lead | (missing) |  |" in md.stdout
    assert "(no schema change)" in md.stdout

    js = runner.invoke(app, [*args, "--format", "json"])
    data = json.loads(js.stdout)
    assert [e["kind"] for e in data["timeline"]] == [
        "session_opened",
        "item_ticked",
        "item_skipped",
        "signed_off",
    ]


def test_report_unknown_session(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deploybot.db'}"
    runner.invoke(app, ["db", "upgrade", "--database-url", url])
    result = runner.invoke(app, ["report", "42", "-c", MINIMAL, "--database-url", url])
    assert result.exit_code == 1
    # The CLI's way to list sessions, not the Slack command's.
    assert result.stderr.strip() == (
        f"error: No deploy session #42 in {url}: "
        f"`deploybot sessions --all --database-url '{url}'` lists them."
    )


@pytest.mark.parametrize("fmt", ["pdf", "html"])
def test_report_bad_format(fmt: str) -> None:
    result = runner.invoke(app, ["report", "1", "--format", fmt])
    assert result.exit_code == 2
    assert "--format is md or json" in result.stderr


def test_unreachable_database_is_one_clear_line() -> None:
    url = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: can't reach the database (")
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr
