"""The Markdown runbook importer: sample runbooks, synthetic shapes, and arbitrary text."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from bot.config.checklist_files import read_yaml_checklist
from bot.config.errors import YamlSource
from bot.domain.checklist import Checklist, ChecklistItem
from bot.runbook.parser import RunbookImport, checklist_from_markdown, import_runbook

RUNBOOKS = Path(__file__).resolve().parent.parent / "examples" / "runbooks"
MAILFLOW = RUNBOOKS / "mailflow-production-checklist.md"
OONRUMAIL = RUNBOOKS / "oonrumail-production-runbook.md"
CHECKBOX_LINE = re.compile(r"^\s*(?:[-*+]|\d+[.)]) \[[ xX]\]", re.MULTILINE)


def md(text: str) -> RunbookImport:
    return import_runbook(textwrap.dedent(text))


def all_items(result: RunbookImport) -> list[ChecklistItem]:
    return [item for _, item in result.checklist.walk()]


def probe_rows(result: RunbookImport) -> list[tuple[str, str, int]]:
    return [(p.kind, p.target, p.source_line) for p in result.probes]


def without_signoffs(checklist: Checklist) -> Checklist:
    return checklist.model_copy(update={"signoffs": ()})


def linked(result: RunbookImport) -> Checklist:
    """The imported checklist with the links to suggested probes its YAML writes."""

    def item(each: ChecklistItem) -> ChecklistItem:
        probe = each.probe or result.item_probes.get(each.id)
        children = tuple(item(c) for c in each.children)
        return each.model_copy(update={"probe": probe, "children": children})

    sections = [
        s.model_copy(update={"items": tuple(item(i) for i in s.items)})
        for s in result.checklist.sections
    ]
    return result.checklist.model_copy(update={"sections": tuple(sections)})


def sections(result: RunbookImport) -> list[tuple[str, int]]:
    return [(s.title, len(s.items)) for s in result.checklist.sections]


# --- the sample runbooks ----------------------------------------------------------------


def test_mailflow_sections_and_items() -> None:
    text = MAILFLOW.read_text()
    result = import_runbook(text)

    assert result.checklist.title == "Production Deployment Checklist"
    assert sections(result) == [
        ("Pre-Deployment / Code Quality", 6),
        ("Pre-Deployment / Security", 6),
        ("Pre-Deployment / Configuration", 6),
        ("Pre-Deployment / AWS Setup", 6),
        ("Pre-Deployment / Infrastructure", 5),
        ("Post-Deployment / Monitoring Setup", 5),
        ("Post-Deployment / Documentation", 4),
        ("Post-Deployment / Backup Strategy", 4),
        ("Post-Deployment / Load Testing", 5),
        ("Post-Deployment / Security Validation", 6),
        ("Post-Deployment / Performance Validation", 4),
        ("Week 1 Post-Production / Daily Checks (First Week)", 5),
        ("Week 1 Post-Production / Week 1 Review", 5),
    ]
    assert len(CHECKBOX_LINE.findall(text)) == 67
    assert result.checklist.item_count == 67
    items = all_items(result)
    assert all(item.text in text for item in items)  # nothing invented
    assert items[0].text == "All tests passing: `cargo test --workspace`"
    assert items[0].id == "1.1"
    assert result.checklist.sections[0].id == "pre-deployment-code-quality"
    assert "All health checks return" not in " ".join(i.text for i in items)


def test_mailflow_signoffs_probes_and_notes() -> None:
    result = import_runbook(MAILFLOW.read_text())

    assert result.signoffs == (
        "Engineering Lead",
        "DevOps Lead",
        "Security Lead",
        "Product Manager",
    )
    assert probe_rows(result) == [
        ("http", "https://$(cd infra && pulumi stack output apiUrl)/api/health", 95),
        ("http", "https://your-api-url/api/health", 229),
    ]
    api = result.probes[0]
    assert api.unresolved == ("$(cd infra && pulumi stack output apiUrl)",)
    assert api.spec == {
        "kind": "http",
        "url": "https://$(cd infra && pulumi stack output apiUrl)/api/health",
        "expect_status": [200],
    }
    assert api.command == "curl https://$(cd infra && pulumi stack output apiUrl)/api/health"
    assert result.probes[1].unresolved == ()
    assert result.rollback == ()
    assert result.skipped == (
        "line 50: fenced code block with no recognised command",
        "line 64: fenced code block with no recognised command",
        "line 75: fenced code block with no recognised command",
        "line 100: fenced code block with no recognised command",
        "line 115: fenced code block with no recognised command",
        "line 124: fenced code block with no recognised command",
        "line 265: fenced markdown block not read as commands",
    )


def test_oonrumail_sections_items_and_signoffs() -> None:
    text = OONRUMAIL.read_text()
    result = import_runbook(text)

    assert result.checklist.title == "Production Deployment Runbook"
    assert sections(result) == [
        ("Pre-Deployment Checklist / Environment Verification", 9),
        ("Pre-Deployment Checklist / Code Verification", 7),
        ("Pre-Deployment Checklist / Infrastructure Verification", 9),
        ("Post-Deployment Verification / Manual Verification", 10),
    ]
    assert len(CHECKBOX_LINE.findall(text)) == 35
    assert result.checklist.item_count == 35
    assert all(item.text in text for item in all_items(result))
    assert result.signoffs == ()  # its tables have no Role column
    assert "line 347: table without a Role column" in result.skipped
    assert "line 431: table without a Role column" in result.skipped


def test_oonrumail_probes() -> None:
    result = import_runbook(OONRUMAIL.read_text())

    assert probe_rows(result) == [
        ("kubernetes", "deployment/auth -n email-platform", 125),
        ("kubernetes", "deployment/smtp -n email-platform", 126),
        ("kubernetes", "deployment/imap -n email-platform", 127),
        ("kubernetes", "deployment/storage -n email-platform", 128),
        ("kubernetes", "deployment/domain-manager -n email-platform", 129),
        ("http", "https://api.yourdomain.com/health", 139),
        ("tcp", "mail.yourdomain.com:25", 142),
        ("tcp", "mail.yourdomain.com:993", 145),
        ("http", "https://storage.yourdomain.com/health", 148),
        ("http", "https://api.yourdomain.com/api/domains/health", 151),
        ("http", "http://localhost:3000", 170),
        ("http", "http://localhost:3001", 176),
        ("http", "https://api.yourdomain.com/api/domains", 204),
        ("http", "https://api.yourdomain.com/api/users/me", 205),
        ("kubernetes", "deployment/auth -n email-platform", 243),
        ("http", "https://api.yourdomain.com/health/$service", 290),
        ("sql", "SELECT 1 (-h $POSTGRES_HOST -d oonrumail)", 300),
        ("tcp", "$REDIS_HOST:6379", 304),
        ("tcp", "mail.yourdomain.com:25", 312),
        ("tcp", "mail.yourdomain.com:993", 316),
        ("dns", "MX yourdomain.com", 320),
        ("tls", "api.yourdomain.com:443", 324),
    ]
    by_line = {p.source_line: p for p in result.probes}
    assert by_line[125].spec == {
        "kind": "kubernetes",
        "check": "rollout",
        "deployment": "auth",
        "namespace": "email-platform",
    }
    assert by_line[142].spec == {
        "kind": "tcp",
        "host": "mail.yourdomain.com",
        "port": 25,
        "expect_banner": "220",
    }
    assert by_line[145].spec == {"kind": "tcp", "host": "mail.yourdomain.com", "port": 993}
    assert by_line[290].unresolved == ("$service",)
    assert by_line[300].spec == {"kind": "sql", "url_env": "DATABASE_URL", "query": "SELECT 1"}
    assert by_line[300].unresolved == ("$POSTGRES_HOST",)
    assert by_line[304].spec == {
        "kind": "tcp",
        "host": "$REDIS_HOST",
        "port": 6379,
        "send": "PING\r\n",
        "expect_banner": "PONG",
    }
    assert "REDIS_PASSWORD" not in json.dumps(by_line[304].spec)
    assert by_line[320].spec == {
        "kind": "dns",
        "name": "yourdomain.com",
        "record_type": "MX",
        "contains": "mail.yourdomain.com",
    }
    assert by_line[324].spec == {
        "kind": "tls",
        "host": "api.yourdomain.com",
        "port": 443,
        "min_days": 30,
    }
    assert by_line[324].command.startswith(
        "echo | openssl s_client -connect api.yourdomain.com:443"
    )
    assert by_line[324].command.endswith(
        '-checkend 2592000 > /dev/null || echo "⚠ SSL certificate expires soon"'
    )


def test_oonrumail_rollback_and_notes() -> None:
    result = import_runbook(OONRUMAIL.read_text())

    assert [(r.kind, r.spec, r.source_line) for r in result.rollback] == [
        (
            "kubernetes",
            {"kind": "kubernetes", "deployment": name, "namespace": "email-platform"},
            line,
        )
        for name, line in [
            ("auth", 236),
            ("smtp", 237),
            ("imap", 238),
            ("storage", 239),
            ("domain-manager", 240),
        ]
    ]
    assert result.skipped == (
        "line 64: fenced code block with no recognised command",
        "line 82: psql query '\\\\dt' not suggested: only SELECT 1 is known to be read-only",
        "line 87: fenced code block with no recognised command",
        "line 212: fenced code block with no recognised command",
        "line 258: fenced code block with no recognised command",
        "line 266: psql query 'SELECT version FROM schema_migrations ORDER BY version DESC LIMIT"
        " 5;' not suggested: only SELECT 1 is known to be read-only",
        "line 304: redis-cli password (-a) not copied into the probe; a server that requires AUTH"
        " answers its PING with NOAUTH",
        "line 347: table without a Role column",
        "line 431: table without a Role column",
        "line 445: fenced code block with no recognised command",
    )


@pytest.mark.parametrize("path", [MAILFLOW, OONRUMAIL], ids=lambda p: p.stem)
def test_sample_exports(path: Path) -> None:
    result = import_runbook(path.read_text())

    data = json.loads(json.dumps(result.to_json()))
    assert data["title"] == result.checklist.title
    assert [s["title"] for s in data["sections"]] == [s.title for s in result.checklist.sections]
    assert len(data["probes"]) == len(result.probes)
    assert set(data["probes"][0]) == {
        "name",
        "kind",
        "target",
        "source_line",
        "spec",
        "unresolved",
    }
    assert all(i["probe"] is None for s in data["sections"] for i in s["items"])

    loaded = yaml.safe_load(result.to_yaml())
    assert set(loaded) == {
        "title",
        "sections",
        "signoffs",
        "suggested_probes",
        "suggested_rollback",
    }
    assert loaded["signoffs"] == list(result.signoffs)
    assert [p["probe"] for p in loaded["suggested_probes"]] == [p.spec for p in result.probes]
    assert [p["name"] for p in loaded["suggested_probes"]] == [p.name for p in result.probes]
    file = read_yaml_checklist(YamlSource("checklist.yaml", result.to_yaml()), probes=())
    assert file.problems == []
    assert file.checklist is not None
    assert [s.role for s in file.checklist.signoffs] == list(result.signoffs)
    assert without_signoffs(file.checklist) == without_signoffs(result.checklist)
    assert checklist_from_markdown(path.read_text()) == result.checklist


@pytest.mark.parametrize("path", [MAILFLOW, OONRUMAIL], ids=lambda p: p.stem)
def test_suggestions_fit_the_config_schema(path: Path) -> None:
    """Once its variables are filled in, a suggestion can be pasted into deploybot.yaml."""
    from bot.config.probe_specs import ProbeSpec
    from bot.config.schema import RollbackTarget

    result = import_runbook(path.read_text())
    probes, rollback = TypeAdapter(ProbeSpec), TypeAdapter(RollbackTarget)

    resolved = [p for p in result.probes if not p.unresolved]
    assert len(resolved) == {MAILFLOW: 1, OONRUMAIL: 19}[path]
    for probe in resolved:
        assert probes.validate_python(probe.spec).kind == probe.kind
    for target in result.rollback:
        assert rollback.validate_python(target.spec).kind == "kubernetes"


def test_yaml_header_says_how_suggestions_become_active() -> None:
    text = import_runbook(OONRUMAIL.read_text()).to_yaml()
    header = " ".join(line for line in text.splitlines() if line.startswith("#"))

    assert "It loads as it" in header
    assert "define a probe of the same name under `probes`" in header
    assert "$VAR" in header
    assert "!!python" not in text
    assert "  fill_in:\n  - $POSTGRES_HOST\n" in text


def test_summary_lines() -> None:
    lines = import_runbook(MAILFLOW.read_text()).summary_lines()

    assert lines[:4] == [
        "Production Deployment Checklist: 13 sections, 67 items, 4 sign-offs, 2 suggested probes",
        "sign-off roles: 4 (Engineering Lead, DevOps Lead, Security Lead, Product Manager)",
        "suggested probes: 2 (http 2)",
        "suggested rollback targets: 0",
    ]
    assert lines[4] == "line 50: fenced code block with no recognised command"
    assert lines[-2:] == [
        "line 95: http https://$(cd infra && pulumi stack output apiUrl)/api/health"
        " — fill in: $(cd infra && pulumi stack output apiUrl)",
        "line 229: http https://your-api-url/api/health",
    ]


def test_summary_counts_probes_by_kind() -> None:
    lines = import_runbook(OONRUMAIL.read_text()).summary_lines()

    assert lines[2] == "suggested probes: 22 (kubernetes 6, http 8, tcp 5, sql 1, dns 1, tls 1)"
    assert lines[3] == "suggested rollback targets: 5"


# --- synthetic runbooks -----------------------------------------------------------------


def test_empty_input_gives_an_empty_checklist() -> None:
    result = import_runbook("")

    assert result.checklist == Checklist()
    assert (result.signoffs, result.probes, result.rollback, result.skipped) == ((), (), (), ())
    assert result.to_json()["sections"] == []


def test_bold_parent_holds_its_checkbox_children() -> None:
    result = md("""\
        # Release
        ## Backups
        - **Database**
          - [ ] backups verified
          - [x] restore tested
        - **Object storage** (S3)
          - [ ] versioning on
        - Plain note, not an item
          - and its plain child
        """)

    (section,) = result.checklist.sections
    assert section.title == "Backups"
    assert [(i.text, [c.text for c in i.children]) for i in section.items] == [
        ("Database", ["backups verified", "restore tested"]),
        ("Object storage (S3)", ["versioning on"]),
    ]
    assert [c.id for c in section.items[0].children] == ["1.1.1", "1.1.2"]


def test_nested_checkboxes_become_children() -> None:
    result = md("""\
        - [ ] deploy
          - [ ] api
            - [ ] canary
          - [ ] worker
        """)

    (item,) = result.checklist.sections[0].items
    assert item.text == "deploy"
    assert [c.text for c in item.children] == ["api", "worker"]
    assert [c.text for c in item.children[0].children] == ["canary"]
    assert result.to_json()["sections"][0]["items"][0]["children"][0]["children"] == [
        {"text": "canary", "children": [], "probe": None}
    ]


def test_comment_lines_in_fences_are_not_headings() -> None:
    result = md("""\
        # Runbook

        ## Deploy

        ```bash
        # Build Lambda functions
        make lambda
        ## not a heading either
        ```

        - [ ] built
        """)

    assert sections(result) == [("Deploy", 1)]
    assert result.skipped == ("line 5: fenced code block with no recognised command",)


def test_headings_join_below_the_title_and_skip_empty_ones() -> None:
    result = md("""\
        # Title

        ## Pre-Deployment
        Some prose.
        ### Security
        #### Secrets
        - [ ] rotated
        ### Empty heading
        ## Deploy
        - [ ] go
        # Second top level
        - [ ] after
        """)

    assert sections(result) == [
        ("Pre-Deployment / Security / Secrets", 1),
        ("Deploy", 1),
        ("Second top level", 1),
    ]
    assert result.checklist.title == "Title"


def test_items_without_any_heading() -> None:
    result = md("""\
        - [ ] one
        * [ ] two
        + [X] three
        1. [ ] four
        2) [x] five
        - [ ]
        - [ ]   spaced    out
          text
        - [ ]not a checkbox
        """)

    assert result.checklist.title == "Checklist"
    assert sections(result) == [("Checklist", 6)]
    assert [i.text for i in all_items(result)] == [
        "one",
        "two",
        "three",
        "four",
        "five",
        "spaced out text",
    ]


def test_250_items() -> None:
    body = "\n".join(f"- [ ] step {n}" for n in range(1, 251))
    result = import_runbook(f"# Big\n\n## Steps\n\n{body}\n")

    assert result.checklist.item_count == 250
    assert result.checklist.sections[0].items[-1].id == "1.250"
    assert result.checklist.sections[0].items[-1].text == "step 250"


def test_signoff_lines() -> None:
    result = md("""\
        ## Approvals
        - [ ] Lead Engineer: ______ Date: ____
        - [ ] QA Lead: ___ Date: ___
        - [x] Security Officer: \\_\\_\\_\\_ Signature: \\_\\_\\_
        - [ ] Lead Engineer: ______
        - [ ] Release notes: published on the wiki
        - [ ] Reviewers:
          - [ ] Alice looked
        """)

    assert result.signoffs == ("Lead Engineer", "QA Lead", "Security Officer")
    assert [(i.text, [c.text for c in i.children]) for i in result.checklist.sections[0].items] == [
        ("Release notes: published on the wiki", []),
        ("Reviewers:", ["Alice looked"]),
    ]


SIGNOFF_FORMS = [
    "{role}: ______ Date: ____",
    "{role}: ___",
    "{role}: \\_\\_\\_ Signature: \\_\\_\\_",
    "{role}: ____ **Date:** ____",
    "{role}:",
]
EMPHASIS = [
    "**{name}**:",
    "**{name}:**",
    "*{name}*:",
    "*{name}:*",
    "_{name}_:",
    "_{name}:_",
    "__{name}__:",
    "***{name}***:",
    "`{name}`:",
    "`{name}:`",
]


@pytest.mark.parametrize("form", SIGNOFF_FORMS)
@pytest.mark.parametrize("emphasis", EMPHASIS)
@pytest.mark.parametrize("box", ["[ ]", "[x]"])
def test_signoff_lines_with_the_role_emphasised(form: str, emphasis: str, box: str) -> None:
    # The form's colon goes where the emphasis puts it: inside or after.
    line = form.replace("{role}:", emphasis.format(name="Deployment Manager"), 1)
    result = md(f"""\
        ## Approvals
        - {box} {line}
        - [ ] Release notes: published
        """)

    assert result.signoffs == ("Deployment Manager",)
    assert [i.text for i in all_items(result)] == ["Release notes: published"]


@pytest.mark.parametrize(
    "line",
    [
        "- [ ] **Deployment Manager** sign here",  # no colon
        "- [ ] **Rollback plan**: documented in the wiki",  # a label, then words
        "- [ ] **Reviewers:**\n  - [ ] Alice looked",  # a grouping over items
    ],
)
def test_emphasised_items_that_are_not_signoffs(line: str) -> None:
    result = md(line + "\n")

    assert result.signoffs == ()
    assert all_items(result)


def test_role_table_cells_in_bold_or_code() -> None:
    result = md("""\
        | Role | Name |
        | ---- | ---- |
        | **Engineering Lead** | |
        | `DBA` | |
        | _QA Lead_ | |
        """)

    assert result.signoffs == ("Engineering Lead", "DBA", "QA Lead")


def test_role_table_gives_signoffs_in_document_order() -> None:
    result = md("""\
        - [ ] Release Manager: ____

        | Name | ROLE | Date |
        | ---- | ---- | ---- |
        | | Engineering Lead | |
        | | ___ | |
        | | release manager | |
        | | DBA | |

        | Role | Signature |
        | ---- | --------- |

        | Metric | Expected |
        | ------ | -------- |
        | Errors | < 1% |
        """)

    assert result.signoffs == ("Release Manager", "Engineering Lead", "DBA")
    assert result.skipped == ("line 13: table without a Role column",)


def test_inline_code_in_items_suggests_probes() -> None:
    result = md("""\
        ## Checks
        - [ ] API healthy: `curl -fsS https://api.example.com/healthz`
        - [ ] Tests pass: `make test`
        - **Database**
          - [ ] PITR on: `aws dynamodb describe-continuous-backups --table-name orders`
        """)

    assert probe_rows(result) == [
        ("http", "https://api.example.com/healthz", 2),
        ("aws", "orders (DynamoDB point-in-time recovery)", 5),
    ]
    data = result.to_json()
    assert [(p["name"], p["spec"]) for p in data["probes"]] == [
        (
            "http-api-example-com-healthz",
            {"kind": "http", "url": "https://api.example.com/healthz", "expect_status": [200]},
        ),
        (
            "aws-orders-dynamodb-point-in-time-recovery",
            {"kind": "aws", "check": "dynamodb_pitr", "table": "orders"},
        ),
    ]
    items = data["sections"][0]["items"]
    assert items[0]["probe"] == "http-api-example-com-healthz"
    assert items[1]["probe"] is None
    assert items[2]["probe"] is None
    assert items[2]["children"][0]["probe"] == "aws-orders-dynamodb-point-in-time-recovery"
    assert result.skipped == ()  # inline code that is no check is no news


def test_an_html_comment_links_an_item_to_a_probe_and_shows_nowhere() -> None:
    result = md("""\
        ## Checks
        - [ ] API healthy <!-- probe: api-health -->
        - **Database** <!--probe:db-->
          - [ ] Replicas in sync <!-- a note, kept -->
        """)

    assert [(i.text, i.probe) for i in all_items(result)] == [
        ("API healthy", "api-health"),
        ("Database", "db"),
        ("Replicas in sync <!-- a note, kept -->", None),
    ]
    assert result.summary_lines()[0].endswith("3 items, 0 sign-offs, 0 suggested probes")
    loaded = yaml.safe_load(result.to_yaml())
    assert loaded["sections"][0]["items"][0] == {"text": "API healthy", "probe": "api-health"}


def test_import_links_items_to_the_probes_suggested_from_their_own_code() -> None:
    result = md("""\
        ## Checks
        - [ ] API healthy `curl -fsS https://api.example.com/health`
        - [ ] Mail port open
          ```bash
          nc -z mail.example.com 25
          curl https://mail.example.com/status
          ```
        - [ ] Configured by hand `curl https://web.example.com/` <!-- probe: web -->
        - [ ] Read the dashboard
        """)

    names = [p.name for p in result.probes]
    assert names == [
        "http-api-example-com-health",
        "tcp-mail-example-com-25",
        "http-mail-example-com-status",
        "http-web-example-com",
    ]
    assert result.item_probes == {
        "1.1": "http-api-example-com-health",
        "1.2": "tcp-mail-example-com-25",  # the first probe of a block under the item
    }
    assert [i.probe for i in all_items(result)] == [None, None, "web", None]
    loaded = yaml.safe_load(result.to_yaml())
    assert [i.get("probe") for i in loaded["sections"][0]["items"]] == [
        "http-api-example-com-health",
        "tcp-mail-example-com-25",
        "web",
        None,
    ]
    assert [p["name"] for p in loaded["suggested_probes"]] == names


def test_suggested_probe_names_leave_out_shell_variables_and_stay_unique() -> None:
    result = fenced(
        "curl https://$(pulumi stack output apiUrl)/api/health",
        "curl https://${HOST}/api/health",
        "curl https://api.example.com/api/health",
    )

    assert [p.name for p in result.probes] == [
        "http-api-health",
        "http-api-health-2",
        "http-api-example-com-api-health",
    ]


def test_probes_stay_in_document_order_under_a_plain_parent() -> None:
    result = md("""\
        - Check `curl https://parent.example.com`
          - [ ] child `nc -z child.example.com 22`
        """)

    assert [i.text for i in all_items(result)] == [
        "Check `curl https://parent.example.com`",
        "child `nc -z child.example.com 22`",
    ]
    assert probe_rows(result) == [
        ("http", "https://parent.example.com", 1),
        ("tcp", "child.example.com:22", 2),
    ]


def fenced(*lines: str) -> RunbookImport:
    """One fenced bash block whose first command line is Markdown line 2."""
    return import_runbook("```bash\n" + "\n".join(lines) + "\n```\n")


@pytest.mark.parametrize(
    ("command", "kind", "target", "spec"),
    [
        (
            'curl -s -o /dev/null -w "%{http_code}" https://x.io/health || exit 1',
            "http",
            "https://x.io/health",
            {"kind": "http", "url": "https://x.io/health", "expect_status": [200]},
        ),
        (
            'curl -H "Authorization: Bearer $TOKEN" "${BASE_URL}/health"',
            "http",
            "${BASE_URL}/health",
            {"kind": "http", "url": "${BASE_URL}/health", "expect_status": [200]},
        ),
        (
            "kubectl rollout status deploy/api --namespace prod --timeout 120s",
            "kubernetes",
            "deployment/api -n prod",
            {"kind": "kubernetes", "check": "rollout", "deployment": "api", "namespace": "prod"},
        ),
        (
            "kubectl -n=ops rollout status deployments/worker",
            "kubernetes",
            "deployment/worker -n ops",
            {"kind": "kubernetes", "check": "rollout", "deployment": "worker", "namespace": "ops"},
        ),
        (
            "kubectl --namespace=ops rollout status deployment web",
            "kubernetes",
            "deployment/web -n ops",
            {"kind": "kubernetes", "check": "rollout", "deployment": "web", "namespace": "ops"},
        ),
        (
            "aws --region eu-west-1 dynamodb describe-continuous-backups --table-name=t1",
            "aws",
            "t1 (DynamoDB point-in-time recovery)",
            {"kind": "aws", "check": "dynamodb_pitr", "table": "t1", "region": "eu-west-1"},
        ),
        (
            "kubectl --context prod-eu rollout status deploy/api",
            "kubernetes",
            "deployment/api -n default",
            {
                "kind": "kubernetes",
                "check": "rollout",
                "deployment": "api",
                "namespace": "default",
                "context": "prod-eu",
            },
        ),
        (
            "nc -z db.internal 5432",
            "tcp",
            "db.internal:5432",
            {"kind": "tcp", "host": "db.internal", "port": 5432},
        ),
        (
            "nc -w 5 mx.example.com 25",
            "tcp",
            "mx.example.com:25",
            {"kind": "tcp", "host": "mx.example.com", "port": 25, "expect_banner": "220"},
        ),
        (
            "dig MX example.com",
            "dns",
            "MX example.com",
            {"kind": "dns", "name": "example.com", "record_type": "MX"},
        ),
        (
            'dig example.com txt +short | grep -q "v=spf1"',
            "dns",
            "TXT example.com",
            {"kind": "dns", "name": "example.com", "record_type": "TXT", "contains": "v=spf1"},
        ),
        (
            "dig @1.1.1.1 +short example.com NS",
            "dns",
            "NS example.com",
            {"kind": "dns", "name": "example.com", "record_type": "NS", "nameserver": "1.1.1.1"},
        ),
        (
            "openssl s_client -connect 10.0.0.5:443 -servername www.example.com | "
            "openssl x509 -noout -checkend 0",
            "tls",
            "10.0.0.5:443",
            {
                "kind": "tls",
                "host": "10.0.0.5",
                "port": 443,
                "min_days": 0,
                "server_name": "www.example.com",
            },
        ),
        (
            "openssl s_client -connect $HOST:8443 </dev/null | openssl x509 -checkend 864000",
            "tls",
            "$HOST:8443",
            {"kind": "tls", "host": "$HOST", "port": 8443, "min_days": 10},
        ),
        (
            "psql $DATABASE_URL --command='select  1'",
            "sql",
            "SELECT 1 ($DATABASE_URL)",
            {"kind": "sql", "url_env": "DATABASE_URL", "query": "SELECT 1"},
        ),
        (
            "PGPASSWORD=x psql -c 'SELECT 1' -h db -d app",
            "sql",
            "SELECT 1 (-h db -d app)",
            {"kind": "sql", "url_env": "DATABASE_URL", "query": "SELECT 1"},
        ),
        (
            "redis-cli -p 6380 ping",
            "tcp",
            "localhost:6380",
            {
                "kind": "tcp",
                "host": "localhost",
                "port": 6380,
                "send": "PING\r\n",
                "expect_banner": "PONG",
            },
        ),
        (
            "sudo redis-cli -h cache.internal -p $REDIS_PORT PING",
            "tcp",
            "cache.internal:$REDIS_PORT",
            {
                "kind": "tcp",
                "host": "cache.internal",
                "port": "$REDIS_PORT",
                "send": "PING\r\n",
                "expect_banner": "PONG",
            },
        ),
    ],
)
def test_recognised_commands(command: str, kind: str, target: str, spec: dict[str, Any]) -> None:
    result = fenced(command)

    assert probe_rows(result) == [(kind, target, 2)]
    assert result.probes[0].spec == spec
    assert result.probes[0].command == command
    if not result.probes[0].unresolved:
        from bot.config.probe_specs import ProbeSpec

        TypeAdapter(ProbeSpec).validate_python(spec)


@pytest.mark.parametrize(
    "command",
    [
        "curl --version",
        "curl localhost:8080/health",  # no scheme: not known to be http
        "kubectl get pods -n prod",
        "kubectl rollout restart deployment/api",
        "aws s3 ls s3://bucket",
        "dig",
        "nc host",
        "psql -h db -d app",
        "redis-cli -h cache",
        "redis-cli -h cache SET k v",
        "openssl x509 -in cert.pem -noout -checkend 86400",
        "echo curl https://not.run.example.com",
        "# curl https://commented.example.com",
    ],
)
def test_commands_that_are_not_probes(command: str) -> None:
    assert fenced(command).probes == ()


def test_commands_that_are_noted_not_suggested() -> None:
    result = fenced(
        "curl -X POST https://api.example.com/deploy",
        "curl -d '{}' https://api.example.com/cache/flush",
        "psql -c 'DELETE FROM sessions'",
        "kubectl rollout status statefulset/db -n prod",
        "redis-cli -u redis://:secret@cache:6379 PING",
        "dig example.com DNSKEY",
    )

    assert result.probes == ()
    assert result.skipped == (
        "line 1: fenced code block with no recognised command",
        "line 2: curl -X POST is not a read-only check",
        "line 3: curl that sends data is not a read-only check",
        "line 4: psql query 'DELETE FROM sessions' not suggested: only SELECT 1 is known to be"
        " read-only",
        "line 5: kubectl rollout status of statefulset/db: only deployments are supported",
        "line 6: redis-cli -u URL not suggested: the URL may hold a password",
        "line 7: dig DNSKEY example.com: the dns probe does not check DNSKEY",
    )
    assert "secret" not in json.dumps(result.to_json())


def test_continuations_heredocs_and_substitutions() -> None:
    result = fenced(
        "curl -s \\",
        "  -o /dev/null \\",
        "  https://api.example.com/health",
        "redis-cli -h $REDIS_HOST <<EOF",
        "PING",
        "curl https://inside.heredoc.example.com",
        "EOF",
        'STATUS=$(kubectl rollout status deployment/api -n "$NS")',
        "dig +short MX example.com |",
        "  grep mx1.example.com",
        "for svc in a b; do curl https://x.example.com/$svc/health; done",
    )

    assert probe_rows(result) == [
        ("http", "https://api.example.com/health", 2),
        ("kubernetes", "deployment/api -n $NS", 9),
        ("dns", "MX example.com", 10),
        ("http", "https://x.example.com/$svc/health", 12),
    ]
    assert result.probes[0].command == "curl -s -o /dev/null https://api.example.com/health"
    assert result.probes[1].unresolved == ("$NS",)
    assert result.probes[1].command == 'STATUS=$(kubectl rollout status deployment/api -n "$NS")'
    assert result.probes[2].spec["contains"] == "mx1.example.com"
    assert result.probes[3].unresolved == ("$svc",)


def test_rollout_undo_is_a_rollback_not_a_probe() -> None:
    result = fenced(
        "kubectl rollout undo deployment/api -n prod",
        "kubectl rollout undo deploy/worker --context=blue",
    )

    assert result.probes == ()
    assert [(r.kind, r.spec, r.source_line) for r in result.rollback] == [
        ("kubernetes", {"kind": "kubernetes", "deployment": "api", "namespace": "prod"}, 2),
        (
            "kubernetes",
            {
                "kind": "kubernetes",
                "deployment": "worker",
                "namespace": "default",
                "context": "blue",
            },
            3,
        ),
    ]
    assert result.to_json()["rollback"][0] == {
        "kind": "kubernetes",
        "spec": {"kind": "kubernetes", "deployment": "api", "namespace": "prod"},
        "source_line": 2,
    }


def test_code_in_lists_and_indented_code_blocks_is_scanned() -> None:
    result = md("""\
        1. Verify:

           ```sh
           curl https://a.example.com/health
           ```

        Then:

            nc -z b.example.com 443

        ```python
        print("curl https://c.example.com")
        ```
        """)

    assert probe_rows(result) == [
        ("http", "https://a.example.com/health", 4),
        ("tcp", "b.example.com:443", 9),
    ]
    assert result.skipped == ("line 11: fenced python block not read as commands",)


def test_unclosed_fence_swallows_the_rest() -> None:
    result = md("""\
        ## Deploy
        - [ ] before
        ```
        curl https://x.example.com
        - [ ] inside the fence
        """)

    assert [i.text for i in all_items(result)] == ["before"]
    assert probe_rows(result) == [("http", "https://x.example.com", 4)]


# --- any text at all --------------------------------------------------------------------

_WORDS = st.text(st.characters(codec="utf-8"), max_size=12)
_LINES = st.one_of(
    st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 7), _WORDS),
    st.builds(
        lambda indent, marker, box, t: " " * indent + f"{marker} {box} {t}",
        st.integers(0, 12),
        st.sampled_from(["-", "*", "+", "1.", "2)", "-  "]),
        st.sampled_from(["[ ]", "[x]", "[X]", "[]", "[ ]", "**Bold**", ""]),
        _WORDS,
    ),
    st.sampled_from(
        [
            "```",
            "```bash",
            "~~~",
            "| Role | Name |",
            "| --- | --- |",
            "| QA Lead | |",
            "|---|",
            "- [ ] Lead Engineer: ______ Date: ____",
            "curl https://$(echo x)/health \\",
            "echo QUIT | nc $H 25 || exit 1",
            "openssl s_client -connect h:443 | \\",
            "  openssl x509 -checkend 86400",
            "kubectl rollout undo deploy/x -n y",
            "redis-cli -a p PING <<EOF",
            "EOF",
            "dig +short MX d | grep 'x",
            'psql -c "SELECT 1"',
            "> - [ ] quoted",
            "    indented code",
            "",
            "$((($(`",
        ]
    ),
    _WORDS,
)
_MARKDOWNISH = st.lists(_LINES, max_size=40).map("\n".join)


def check_invariants(result: RunbookImport) -> None:
    for item in all_items(result):
        assert item.text
        assert item.text == item.text.strip()
    assert all(s.title for s in result.checklist.sections)
    assert len(set(result.signoffs)) == len(result.signoffs)
    json.dumps(result.to_json())
    file = read_yaml_checklist(YamlSource("checklist.yaml", result.to_yaml()), probes=None)
    assert file.checklist is not None
    assert [s.role for s in file.checklist.signoffs] == list(result.signoffs)
    assert without_signoffs(file.checklist) == without_signoffs(linked(result))
    result.summary_lines()


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_imports(text: str) -> None:
    check_invariants(import_runbook(text))


@settings(max_examples=200, deadline=None)
@given(_MARKDOWNISH)
def test_markdownish_text_imports(text: str) -> None:
    check_invariants(import_runbook(text))


@pytest.mark.parametrize(
    "text",
    [
        "".join(f"{'  ' * depth}- [ ] level {depth}\n" for depth in range(200)),
        "> " * 500 + "- [ ] deep quote",
        "- " * 500 + "[ ] deep list",
        "```\n" * 1001,
        "| Role |\n|---|\n",
        "| a | b |\n|---|---|\n" + "| x |\n" * 100,
        "$(" * 5000 + "curl https://x",
        "`" * 3001,
        "- [ ] " + "x " * 100_000,
        "```bash\n" + 'curl "unbalanced https://x\n' * 500 + "```\n",
        "\x00\r\n\r- [ ] a\x0bb\u2028c\n",
    ],
    ids=[
        "deep-nesting",
        "deep-quote",
        "deep-list",
        "fences",
        "role-table-without-body",
        "ragged-table",
        "nested-substitutions",
        "backquotes",
        "huge-item",
        "unbalanced-quotes",
        "control-characters",
    ],
)
def test_hostile_inputs_import(text: str) -> None:
    check_invariants(import_runbook(text))


PLACEHOLDER = "result >= 0"


@pytest.mark.parametrize(
    ("command", "kind", "target", "spec"),
    [
        (
            "curl -s 'http://prometheus:9090/api/v1/query?query=sum(rate(errors[5m]))'",
            "prometheus",
            "sum(rate(errors[5m])) (http://prometheus:9090)",
            {
                "kind": "prometheus",
                "url": "http://prometheus:9090",
                "query": "sum(rate(errors[5m]))",
                "condition": PLACEHOLDER,
            },
        ),
        (
            "curl -sG https://prom.example.com/prom/api/v1/query "
            "--data-urlencode 'query=up{job=\"api\"} == 0' | jq .data.result",
            "prometheus",
            'up{job="api"} == 0 (https://prom.example.com/prom)',
            {
                "kind": "prometheus",
                "url": "https://prom.example.com/prom",
                "query": 'up{job="api"} == 0',
                "condition": PLACEHOLDER,
            },
        ),
        (
            "promtool query instant http://prometheus:9090 'histogram_quantile(0.99, x)'",
            "prometheus",
            "histogram_quantile(0.99, x) (http://prometheus:9090)",
            {
                "kind": "prometheus",
                "url": "http://prometheus:9090",
                "query": "histogram_quantile(0.99, x)",
                "condition": PLACEHOLDER,
            },
        ),
        (
            "aws cloudwatch describe-alarms --alarm-name-prefix prod-api --state-value ALARM",
            "aws",
            "alarms prod-api* (none in ALARM)",
            {"kind": "aws", "check": "cloudwatch_alarms", "alarm_prefix": "prod-api"},
        ),
        (
            "aws cloudwatch get-metric-statistics --namespace AWS/ApplicationELB "
            "--metric-name HTTPCode_Target_5XX_Count "
            "--dimensions Name=LoadBalancer,Value=app/prod/abc Name=TargetGroup,Value=tg/api "
            "--statistics Sum --period 300 --start-time 2024-01-01T00:00:00Z "
            "--end-time 2024-01-01T01:00:00Z --region eu-west-1",
            "cloudwatch_metric",
            "AWS/ApplicationELB HTTPCode_Target_5XX_Count",
            {
                "kind": "cloudwatch_metric",
                "namespace": "AWS/ApplicationELB",
                "metric": "HTTPCode_Target_5XX_Count",
                "dimensions": {"LoadBalancer": "app/prod/abc", "TargetGroup": "tg/api"},
                "statistic": "Sum",
                "period": "5m",
                "window": "5m",
                "condition": PLACEHOLDER,
                "region": "eu-west-1",
            },
        ),
    ],
)
def test_metric_commands_suggest_metric_probes(
    command: str, kind: str, target: str, spec: dict[str, Any]
) -> None:
    from bot.config.probe_specs import ProbeSpec

    result = fenced(command)
    assert probe_rows(result) == [(kind, target, 2)]
    assert result.probes[0].spec == spec
    assert TypeAdapter(ProbeSpec).validate_python(spec).kind == kind
    if spec.get("condition") == PLACEHOLDER:  # the runbook shows no threshold: it says so
        assert any("set the threshold the runbook means" in note for note in result.skipped)


def test_metric_commands_that_are_noted_not_suggested() -> None:
    result = fenced(
        "aws cloudwatch describe-alarms --state-value ALARM",
        "promtool query range --start=1h http://prometheus:9090 up",
        "promtool query instant --time=2024-01-01T00:00:00Z http://prometheus:9090 up",
        "curl -X DELETE 'http://prometheus:9090/api/v1/query?query=up'",
    )
    assert result.probes == ()
    assert result.skipped == (
        "line 1: fenced code block with no recognised command",
        "line 2: aws cloudwatch describe-alarms without --alarm-name-prefix: name the alarms "
        "the probe watches (alarm_prefix)",
        "line 3: promtool query range: only instant queries are suggested as probes",
        "line 4: promtool query instant --time: a probe queries now, not 2024-01-01T00:00:00Z",
        "line 5: curl -X DELETE to the Prometheus API is not a query",
    )
