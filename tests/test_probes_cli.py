"""``deploybot probes run ENV``: probes against local servers, the table, the exit status."""

from __future__ import annotations

import socketserver
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config.loader import load_config
from bot.integrations.probes.select import environment_probes, item_links
from tests.test_probes_network import BannerHandler, http_server, serving

runner = CliRunner()

CHECKLIST = """\
title: Release
sections:
  - title: Pre-Deployment
    items:
      - text: Tests pass
      - text: Mail server answers
        probe: smtp
  - title: Post-Deployment
    items:
      - text: API healthy
        probe: api
      - text: API healthy again, from the dashboard
        probe: api
"""

PLAIN_CHECKLIST = """\
title: Release
sections:
  - title: Steps
    items:
      - text: Deploy
"""


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[str, int]]:
    """A local HTTP server (``/health``, ``/down``) and an SMTP banner server."""
    with (
        http_server() as web,
        serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), BannerHandler)) as smtp,
    ):
        yield web, smtp


@pytest.fixture
def config(tmp_path: Path, peers: tuple[str, int]) -> Path:
    web, smtp = peers
    (tmp_path / "release.yaml").write_text(CHECKLIST, encoding="utf-8")
    (tmp_path / "plain.yaml").write_text(PLAIN_CHECKLIST, encoding="utf-8")
    path = tmp_path / "deploybot.yaml"
    path.write_text(
        f"""\
roles:
  deployers: [U0DEPLOYER]
probes:
  api: {{kind: http, url: "{web}/health", timeout: 5s}}
  smtp: {{kind: tcp, host: 127.0.0.1, port: {smtp}, expect_banner: "220", timeout: 5s}}
  db-down: {{kind: http, url: "{web}/down", timeout: 5s}}
  search-down: {{kind: http, url: "{web}/down", timeout: 5s, severity: warning}}
environments:
  healthy:
    channel: "#deploys"
    checklist: release.yaml
    starters: [deployers]
    probes: [api]
  broken:
    channel: "#deploys"
    checklist: plain.yaml
    starters: [deployers]
    probes: [api, db-down]
  degraded:
    channel: "#deploys"
    checklist: plain.yaml
    starters: [deployers]
    probes: [search-down, api]
  bare:
    channel: "#deploys"
    checklist: plain.yaml
    starters: [deployers]
""",
        encoding="utf-8",
    )
    return path


def probes_run(config: Path, env: str, *extra: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["probes", "run", env, "--config", str(config), *extra])
    return result.exit_code, result.stdout, result.stderr


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by probe name: each row's cells, for the rows that start one."""
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 6 and cells[0] and cells[0] != "probe":
            rows[cells[0]] = cells
    return rows


def test_selection_adds_checklist_linked_probes_in_config_order(config: Path) -> None:
    loaded = load_config(config)
    assert list(environment_probes(loaded, "healthy")) == ["api", "smtp"]
    assert item_links(loaded, "healthy") == {"api": ["2.1", "2.2"], "smtp": ["1.2"]}
    assert list(environment_probes(loaded, "degraded")) == ["api", "search-down"]
    assert item_links(loaded, "broken") == {"api": [], "db-down": []}
    assert environment_probes(loaded, "bare") == {}


def test_all_pass_exit_0_with_a_table(config: Path) -> None:
    code, stdout, stderr = probes_run(config, "healthy")
    assert code == 0, stderr
    rows = table_rows(stdout)
    assert set(rows) == {"api", "smtp"}
    assert rows["api"][1:3] == ["http", "passed"] and rows["api"][5] == "critical"
    assert rows["smtp"][1:3] == ["tcp", "passed"]
    assert rows["api"][3].startswith("HTTP 200 in") and rows["api"][4].endswith("ms")
    for header in ("probe", "kind", "result", "summary", "duration", "severity"):
        assert header in stdout
    # The progress display and each result as it lands go to stderr, not into the table.
    assert "passed api: HTTP 200 in" in stderr and "passed smtp:" in stderr
    assert "2/2" in stderr
    assert stderr.rstrip().endswith("2 passed, 0 failed (0 critical).")


def test_a_critical_failure_exits_1(config: Path) -> None:
    code, stdout, stderr = probes_run(config, "broken", "--concurrency", "1")
    assert code == 1
    rows = table_rows(stdout)
    assert rows["db-down"][2:4] == ["failed", "HTTP 503 (expected 200)"]
    assert rows["api"][2] == "passed"
    assert "1 passed, 1 failed (1 critical)." in stderr


def test_a_warning_alone_exits_0(config: Path) -> None:
    code, stdout, stderr = probes_run(config, "degraded")
    assert code == 0, stderr
    rows = table_rows(stdout)
    assert rows["search-down"][2] == "failed" and rows["search-down"][5] == "warning"
    assert "1 passed, 1 failed (0 critical)." in stderr


def test_no_probes_exits_2_and_says_so(config: Path) -> None:
    code, stdout, stderr = probes_run(config, "bare")
    assert (code, stdout) == (2, "")
    assert stderr.strip().startswith("Environment 'bare' has no probes")
    assert len(stderr.strip().splitlines()) == 1


def test_unknown_environment_is_one_line(config: Path) -> None:
    code, stdout, stderr = probes_run(config, "prod")
    assert (code, stdout) == (1, "")
    assert stderr.strip().splitlines() == [
        "error: Unknown environment 'prod'. Known: bare, broken, degraded, healthy."
    ]


def test_missing_config_file_is_reported_without_a_traceback(tmp_path: Path) -> None:
    code, _, stderr = probes_run(tmp_path / "nowhere.yaml", "prod")
    assert code == 1
    assert stderr.strip().startswith("error: 1 error in the configuration:")
    assert "config file not found" in stderr and "Traceback" not in stderr


def test_bad_concurrency_is_refused(config: Path) -> None:
    code, _, stderr = probes_run(config, "healthy", "--concurrency", "0")
    assert code == 2 and "Invalid value for '--concurrency'" in stderr
