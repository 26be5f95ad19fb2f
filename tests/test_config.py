"""The config file: examples load, every problem is reported with its file, line and path."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config.checklist_files import load_checklist
from bot.config.loader import check_config, load_config, summarize
from bot.config.probe_specs import AwsProbe, HttpProbe, format_duration, parse_duration
from bot.config.schema import Config
from bot.domain.checklist import Gate
from bot.domain.errors import ConfigError, NotFound

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CHECKLIST = """\
title: Test deploy
sections:
  - title: Pre-Deployment
    items:
      - text: Tests pass
      - text: Health is green
        probe: api-health
  - title: Post-Deployment
    gate: {after: [pre-deployment]}
    items:
      - text: Smoke test
"""

CONFIG = """\
roles:
  deployers: [U0DEPLOY1, "@platform"]
  devops-leads: [U0DEVOPS1]
  oncall: [U0ONCALL1]
probes:
  api-health:
    kind: http
    url: https://api.example.com/health
environments:
  prod:
    channel: "#deploys"
    checklist: checklist.yaml
    starters: [deployers]
    oncall: [oncall]
    signoffs:
      - role: QA Lead
        by: [devops-leads]
      - role: DevOps Lead
        by: [devops-leads]
    probes: [api-health]
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding a valid checklist; problems then name files as written."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEPLOYBOT_CONFIG", raising=False)
    (tmp_path / "checklist.yaml").write_text(CHECKLIST)
    return tmp_path


def write(workdir: Path, text: str, name: str = "deploybot.yaml") -> str:
    (workdir / name).write_text(textwrap.dedent(text))
    return name


def problems_of(workdir: Path, text: str) -> list[str]:
    return check_config(write(workdir, text))


# --- the examples -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["minimal.yaml", "mailflow.yaml", "oonrumail.yaml"])
def test_every_example_is_valid(name: str) -> None:
    path = EXAMPLES / name
    assert check_config(path) == []
    config = load_config(path)
    assert summarize(config).startswith(f"{path} is valid: ")
    for env in config.environments:
        assert config.checklist(env).item_count > 0


def test_minimal_example_is_what_end_to_end_tests_expect() -> None:
    config = load_config(EXAMPLES / "minimal.yaml")
    assert config.roles == {
        "deployers": ("U0DEPLOYER",),
        "approvers": ("U0APPROVER1", "U0APPROVER2", "@release-managers"),
        "oncall": ("U0ONCALL",),
    }
    assert list(config.environments) == ["staging"]
    staging = config.environment("staging")
    assert [(s.role, s.key, s.by) for s in staging.signoffs] == [
        ("QA Lead", "qa-lead", ("approvers",)),
        ("DevOps Lead", "devops-lead", ("approvers",)),
    ]
    checklist = config.checklist("staging")
    pre, post = checklist.sections
    assert (pre.id, len(pre.items), post.id) == ("pre-deployment", 3, "post-deployment")
    assert post.gate == Gate(after=("pre-deployment",))
    assert [item.probe for item in pre.items] == [None, None, "api-health"]
    assert pre.items[2].id == "1.3"
    assert summarize(config) == (
        f"{EXAMPLES / 'minimal.yaml'} is valid: 1 environment (staging), 3 roles, 1 probe, "
        "5 checklist items."
    )


def test_mailflow_example_signoffs_match_the_runbook_table() -> None:
    prod = load_config(EXAMPLES / "mailflow.yaml").environment("prod")
    assert [s.role for s in prod.signoffs] == [
        "Engineering Lead",
        "DevOps Lead",
        "Security Lead",
        "Product Manager",
    ]
    assert prod.rollback[0].kind == "lambda"


def test_oonrumail_example_rolls_back_the_five_deployments() -> None:
    config = load_config(EXAMPLES / "oonrumail.yaml")
    prod = config.environment("prod")
    deployments = ["auth", "smtp", "imap", "storage", "domain-manager"]
    assert [getattr(target, "deployment", None) for target in prod.rollback] == deployments
    assert prod.monitoring is not None
    assert (prod.monitoring.every, prod.monitoring.for_) == (
        timedelta(minutes=5),
        timedelta(hours=1),
    )


# --- every problem at once, located ------------------------------------------------------------


def test_several_errors_are_all_reported_with_path_and_line(workdir: Path) -> None:
    problems = problems_of(
        workdir,
        """\
        roles:
          deployers: [U0DEPLOY1]
          devops-leads: [U0DEVOPS1]
          oncall: [U0ONCALL1]
        probes:
          api-health:
            kind: http
            url: https://api.example.com/health
            timeout: 5 minutes
        environments:
          prod:
            channel: "#deploys"
            checklist: checklist.yaml
            starters: [deployers]
            signoffs:
              - role: QA Lead
                by: [devops-leads]
              - role: DevOps Lead
                by: [devops]
            gates:
              deploy: {after: [pre-deployment], signoffs: [qa]}
            probes: [api-health, smtp]
            colour: blue
        """,
    )
    assert problems == [
        "deploybot.yaml:9: probes.api-health.timeout: bad duration '5 minutes': "
        "use e.g. 30s, 5m, 1h30m",
        "deploybot.yaml:19: environments.prod.signoffs[1].by: unknown role 'devops' "
        "(roles: deployers, devops-leads, oncall)",
        "deploybot.yaml:21: environments.prod.gates.deploy.signoffs: unknown sign-off 'qa' "
        "(sign-offs: qa-lead, devops-lead)",
        "deploybot.yaml:22: environments.prod.probes: unknown probe 'smtp' (probes: api-health)",
        "deploybot.yaml:23: environments.prod.colour: unknown key (allowed: channel, "
        "incident_channel, checklist, starters, operators, oncall, signoffs, "
        "separation_of_duties, gates, probes, pagerduty, rollback, deploy, services, "
        "rollback_verify, monitoring, "
        "reminders, "
        "expire_after, queue_turn, freezes, freeze_override, requires, emergency, reports)",
    ]
    with pytest.raises(ConfigError) as raised:
        load_config("deploybot.yaml")
    assert raised.value.problems == problems
    assert str(raised.value).startswith("5 errors in the configuration:\n  deploybot.yaml:9:")


def test_unknown_keys_suggest_the_close_one(workdir: Path) -> None:
    text = CONFIG.replace("    channel:", "    chanel:").replace("    kind: http", "    knd: http")
    text = text.replace("roles:", "rolse: {}\nroles:")
    problems = problems_of(workdir, text)
    assert "deploybot.yaml:1: rolse: unknown key (did you mean 'roles'?)" in problems
    assert "deploybot.yaml:7: probes.api-health: missing required key 'kind'" in problems
    assert (
        "deploybot.yaml:12: environments.prod.chanel: unknown key (did you mean 'channel'?)"
        in problems
    )
    assert "deploybot.yaml:11: environments.prod: missing required key 'channel'" in problems


def test_unknown_keys_inside_a_discriminated_union(workdir: Path) -> None:
    text = CONFIG.replace("    url: https", "    verify: no\n    url: https").replace(
        "    probes: [api-health]\n",
        "    probes: [api-health]\n"
        "    rollback:\n"
        "      - {kind: ecs, cluster: c, service: s, regoin: x}\n",
    )
    assert problems_of(workdir, text) == [
        "deploybot.yaml:8: probes.api-health.verify: unknown key (did you mean 'verify_tls'?)",
        "deploybot.yaml:23: environments.prod.rollback[0].regoin: unknown key "
        "(did you mean 'region'?)",
    ]


def test_unknown_probe_kind_lists_the_kinds(workdir: Path) -> None:
    problems = problems_of(workdir, CONFIG.replace("kind: http", "kind: htp"))
    assert problems == [
        "deploybot.yaml:7: probes.api-health.kind: unknown kind 'htp' "
        "(kinds: http, tcp, dns, tls, sql, kubernetes, aws, command, prometheus, "
        "cloudwatch_metric, datadog)"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "starters: [deployers]",
            "starters: [deployers, admins]",
            "deploybot.yaml:13: environments.prod.starters: unknown role 'admins' "
            "(roles: deployers, devops-leads, oncall)",
        ),
        (
            "oncall: [oncall]",
            "oncall: [pager, sre]",
            "deploybot.yaml:14: environments.prod.oncall: unknown roles 'pager', 'sre' "
            "(roles: deployers, devops-leads, oncall)",
        ),
        (
            "oncall: [oncall]",
            "oncall: [oncall]\n    operators: [ops]",
            "deploybot.yaml:15: environments.prod.operators: unknown role 'ops' "
            "(roles: deployers, devops-leads, oncall)",
        ),
        (
            "probes: [api-health]",
            "probes: [api-health, dns]",
            "deploybot.yaml:20: environments.prod.probes: unknown probe 'dns' (probes: api-health)",
        ),
    ],
)
def test_undefined_references(workdir: Path, old: str, new: str, expected: str) -> None:
    assert problems_of(workdir, CONFIG.replace(old, new)) == [expected]


def test_empty_sections_define_nothing(workdir: Path) -> None:
    text = CONFIG.replace(
        "  api-health:\n    kind: http\n    url: https://api.example.com/health\n", ""
    )
    assert problems_of(workdir, text) == [
        "deploybot.yaml:17: environments.prod.probes: unknown probe 'api-health' "
        "(no probes defined)",
        "checklist.yaml:7: sections[0].items[1].probe: unknown probe 'api-health' "
        "(no probes defined)",
    ]


def test_checklist_items_may_only_link_defined_probes(workdir: Path) -> None:
    (workdir / "checklist.yaml").write_text(CHECKLIST.replace("probe: api-health", "probe: smtp"))
    assert problems_of(workdir, CONFIG) == [
        "checklist.yaml:7: sections[0].items[1].probe: unknown probe 'smtp' (probes: api-health)"
    ]


def test_checklist_errors_are_located_in_the_checklist_file(workdir: Path) -> None:
    (workdir / "checklist.yaml").write_text(
        CHECKLIST.replace("      - text: Tests pass\n", "      - txt: Tests pass\n").replace(
            "after: [pre-deployment]", "after: [pre-deploy]"
        )
    )
    assert problems_of(workdir, CONFIG) == [
        "checklist.yaml:5: sections[0].items[0]: missing required key 'text'",
        "checklist.yaml:5: sections[0].items[0].txt: unknown key (did you mean 'text'?)",
        "checklist.yaml:9: sections[1].gate.after: unknown section 'pre-deploy' "
        "(sections: pre-deployment, post-deployment)",
    ]


def test_gates_name_known_sections_and_signoffs(workdir: Path) -> None:
    text = CONFIG + (
        "    gates:\n"
        "      deploy: {after: [pre-deployment, predeploy]}\n"
        "      complete: {signoffs: [devops-lead, security-lead]}\n"
    )
    assert problems_of(workdir, text) == [
        "deploybot.yaml:22: environments.prod.gates.deploy.after: unknown section 'predeploy' "
        "(sections: pre-deployment, post-deployment)",
        "deploybot.yaml:23: environments.prod.gates.complete.signoffs: unknown sign-off "
        "'security-lead' (sign-offs: qa-lead, devops-lead)",
    ]


def test_section_gates_wait_only_for_signoffs_the_environment_requires(workdir: Path) -> None:
    (workdir / "checklist.yaml").write_text(
        CHECKLIST.replace("after: [pre-deployment]", "signoffs: [cto]")
    )
    assert problems_of(workdir, CONFIG) == [
        "checklist.yaml:9: sections[1].gate.signoffs: sign-off 'cto' is not required in "
        "environment 'prod' (sign-offs: qa-lead, devops-lead)"
    ]


def test_report_readers_are_parties_of_the_policy(workdir: Path) -> None:
    assert problems_of(workdir, CONFIG + "    reports: [requester, everyone]\n") == [
        "deploybot.yaml:21: environments.prod.reports[1]: Input should be 'anyone', "
        "'requester', 'operators', 'starters', 'approvers' or 'oncall'"
    ]


@pytest.mark.parametrize(
    "value", ["5 minutes", "0", "0s", "-5", "1h 30m", "''", "soon", "true", "1.5", "m", "30 s"]
)
def test_bad_durations(workdir: Path, value: str) -> None:
    shown = {"''": "", "true": "True"}.get(value, value)
    problems = problems_of(workdir, CONFIG + f"    expire_after: {value}\n")
    assert problems == [
        f"deploybot.yaml:21: environments.prod.expire_after: bad duration '{shown}': "
        "use e.g. 30s, 5m, 1h30m"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
    ],
)
def test_good_durations(value: str | int, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@given(st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=400)))
def test_durations_print_back_to_what_they_read(value: timedelta) -> None:
    value -= value % timedelta(milliseconds=1)
    if value:
        assert parse_duration(format_duration(value)) == value


def test_durations_serialize_to_the_short_form() -> None:
    probe = HttpProbe.model_validate({"url": "https://x.example/health", "timeout": "90"})
    assert probe.model_dump(mode="json")["timeout"] == "1m30s"
    assert HttpProbe.model_validate(probe.model_dump()).timeout == timedelta(seconds=90)


def test_missing_checklist_file_says_the_resolved_path(workdir: Path) -> None:
    problems = problems_of(workdir, CONFIG.replace("checklist.yaml", "runbooks/none.md"))
    assert problems == [
        f"deploybot.yaml:12: environments.prod.checklist: checklist file not found: "
        f"{(workdir / 'runbooks' / 'none.md').resolve()}"
    ]


SECRETS = [
    "xoxb-1234-5678-abcdef",
    "xoxp-1234-5678-abcdef",
    "xapp-1-A111-222-abc",
    "AKIAIOSFODNN7EXAMPLE",
    "postgres://deploy:hunter2@db.example.com/app",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secrets_written_in_the_file_are_rejected(workdir: Path, secret: str) -> None:
    text = CONFIG.replace("    url: https", f"    description: '{secret}'\n    url: https")
    problems = problems_of(workdir, text)
    assert len(problems) == 1
    assert problems[0].startswith("deploybot.yaml:8: probes.api-health.description: this looks")
    assert problems[0].endswith("secrets belong in the environment: name the variable instead")
    assert secret not in problems[0]


def test_a_secret_where_a_variable_name_belongs_is_reported_once(workdir: Path) -> None:
    text = CONFIG + "    pagerduty: {routing_key_env: xoxb-1-2-3}\n"
    assert problems_of(workdir, text) == [
        "deploybot.yaml:21: environments.prod.pagerduty.routing_key_env: this looks like a "
        "Slack token; secrets belong in the environment: name the variable instead"
    ]


def test_env_var_names_must_be_names(workdir: Path) -> None:
    text = CONFIG + "    pagerduty: {routing_key_env: pagerduty-key}\n"
    assert problems_of(workdir, text) == [
        "deploybot.yaml:21: environments.prod.pagerduty.routing_key_env: 'pagerduty-key' is not "
        "an environment variable name (use e.g. DATABASE_URL)"
    ]


def test_yaml_syntax_error_has_its_line(workdir: Path) -> None:
    problems = problems_of(workdir, CONFIG.replace("[deployers]", "[deployers"))
    assert problems == [
        "deploybot.yaml:14: YAML syntax error: while parsing a flow sequence (from line 13), "
        "expected ',' or ']', but got ':'"
    ]


def test_duplicate_keys_are_reported(workdir: Path) -> None:
    text = CONFIG.replace('    channel: "#deploys"', '    channel: "#deploys"\n    channel: "#x"')
    assert problems_of(workdir, text) == [
        "deploybot.yaml:12: environments.prod: duplicate key 'channel' (first at line 11)"
    ]


def test_missing_or_empty_file(workdir: Path) -> None:
    assert check_config("nope.yaml") == [
        f"nope.yaml: config file not found: {(workdir / 'nope.yaml').resolve()}"
    ]
    assert problems_of(workdir, "") == [
        "deploybot.yaml: the file is empty: declare roles, probes, environments"
    ]


def test_default_path_comes_from_the_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir, CONFIG, "elsewhere.yaml")
    monkeypatch.setenv("DEPLOYBOT_CONFIG", "elsewhere.yaml")
    assert load_config().source == "elsewhere.yaml"
    monkeypatch.delenv("DEPLOYBOT_CONFIG")
    write(workdir, CONFIG)
    assert load_config().source == "deploybot.yaml"
    assert load_config().base_dir == workdir.resolve()


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ("{kind: kubernetes, check: rollout}", "check 'rollout' needs 'deployment'"),
        ("{kind: kubernetes, check: pods, deployment: x}", "check 'pods' needs 'selector'"),
        ("{kind: aws, check: sqs_depth}", "check 'sqs_depth' needs 'queue_name' or 'queue_url'"),
        (
            "{kind: aws, check: dynamodb_pitr, table: t, identity: i}",
            "check 'dynamodb_pitr' does not use 'identity'",
        ),
        ("{kind: tcp, host: h, port: 70000}", "Input should be less than or equal to 65535"),
        ("{kind: http, url: ftp://x}", "'ftp://x' is not an http(s) URL"),
        (
            "{kind: http, url: 'https://x', json_path: a..b}",
            "'a..b' is not a dotted path like 'checks.db'",
        ),
        ("{kind: http, url: 'https://x', json_value: ok}", "json_value needs json_path"),
    ],
)
def test_probe_kinds_check_their_fields(workdir: Path, probe: str, expected: str) -> None:
    text = CONFIG.replace("environments:", f"  other: {probe}\nenvironments:")
    problems = problems_of(workdir, text)
    assert len(problems) == 1
    assert problems[0].startswith("deploybot.yaml:9: probes.other")
    assert problems[0].endswith(expected)


# --- the API ----------------------------------------------------------------------------------


def test_unknown_environment_names_the_known_ones(workdir: Path) -> None:
    text = CONFIG + CONFIG[CONFIG.index("  prod:") :].replace("  prod:", "  staging:")
    config = load_config(write(workdir, text))
    with pytest.raises(NotFound, match=r"^Unknown environment 'dev'\. Known: prod, staging\.$"):
        config.environment("dev")
    with pytest.raises(NotFound, match="Unknown environment 'dev'"):
        config.checklist("dev")


def test_defaults_are_applied(workdir: Path) -> None:
    config = load_config(write(workdir, CONFIG))
    prod = config.environment("prod")
    assert prod.operators == prod.effective_operators == ("deployers",)
    assert prod.incident_channel == "#deploys"
    assert prod.signoff_keys == ("qa-lead", "devops-lead")
    assert prod.deploy_gate == Gate(signoffs=("qa-lead", "devops-lead"))
    assert prod.complete_gate == Gate(signoffs=("qa-lead", "devops-lead"))
    assert prod.separation_of_duties is True
    assert prod.expire_after == timedelta(hours=24)
    assert (prod.rollback, prod.pagerduty, prod.monitoring, prod.reminders) == (
        (),
        None,
        None,
        None,
    )
    probe = config.probes["api-health"]
    assert isinstance(probe, HttpProbe)
    assert (probe.method, probe.expect_status, probe.timeout, probe.severity) == (
        "GET",
        (200,),
        timedelta(seconds=10),
        "critical",
    )
    assert config.members("deployers") == ("U0DEPLOY1", "@platform")
    with pytest.raises(NotFound, match="Unknown role 'x'"):
        config.members("x")


def test_explicit_values_win_over_defaults(workdir: Path) -> None:
    text = CONFIG.replace(
        "    oncall: [oncall]\n",
        "    oncall: [oncall]\n"
        "    operators: [devops-leads]\n"
        '    incident_channel: "#incidents"\n'
        "    gates:\n"
        "      deploy: {after: [pre-deployment]}\n"
        "      complete: {signoffs: []}\n"
        "    monitoring: {every: 5m, for: 1h}\n"
        "    reminders: {after: 30m}\n",
    )
    prod = load_config(write(workdir, text)).environment("prod")
    assert prod.operators == ("devops-leads",)
    assert prod.incident_channel == "#incidents"
    assert prod.deploy_gate == Gate(after=("pre-deployment",), signoffs=("qa-lead", "devops-lead"))
    assert prod.complete_gate == Gate()
    assert prod.monitoring is not None
    assert prod.monitoring.model_dump(mode="json") == {"every": "5m", "for": "1h"}
    assert prod.reminders is not None and prod.reminders.after == timedelta(minutes=30)


def test_monitoring_schedule_as_text(workdir: Path) -> None:
    text = CONFIG + "    monitoring: every 10m for 2h\n"
    monitoring = load_config(write(workdir, text)).environment("prod").monitoring
    assert monitoring is not None
    assert (monitoring.every, monitoring.for_) == (timedelta(minutes=10), timedelta(hours=2))
    assert problems_of(workdir, CONFIG + "    monitoring: every 2h for 1h\n") == [
        "deploybot.yaml:21: environments.prod.monitoring: 'every' must not be longer than 'for'"
    ]


def test_checklists_are_loaded_numbered_and_cached(workdir: Path) -> None:
    config = load_config(write(workdir, CONFIG))
    checklist = config.checklist("prod")
    assert checklist is config.checklist("prod")
    assert [s.id for s in checklist.sections] == ["pre-deployment", "post-deployment"]
    assert [item.id for _, item in checklist.walk()] == ["1.1", "1.2", "2.1"]
    assert summarize(config) == (
        "deploybot.yaml is valid: 1 environment (prod), 3 roles, 1 probe, 3 checklist items."
    )


def test_a_config_built_in_code_loads_its_checklist_lazily(workdir: Path) -> None:
    config = Config.model_validate(load_config(write(workdir, CONFIG)).model_dump())
    assert config.checklist("prod").item_count == 3
    assert load_checklist("checklist.yaml").sections[1].gate == Gate(after=("pre-deployment",))
    with pytest.raises(ConfigError, match="unknown probe 'api-health'"):
        load_checklist("checklist.yaml", probes=())


def test_markdown_checklists_are_imported(workdir: Path) -> None:
    (workdir / "runbook.md").write_text(
        "# Runbook\n\n## Before\n\n- [ ] Backups done\n- [ ] Tests green\n\n"
        "## After\n\n- [ ] Smoke test\n"
    )
    text = CONFIG.replace("checklist.yaml", "runbook.md") + (
        "    gates:\n      deploy: {after: [before]}\n"
    )
    assert problems_of(workdir, text) == []
    checklist = load_config("deploybot.yaml").checklist("prod")
    assert [s.id for s in checklist.sections] == ["before", "after"]
    assert checklist.item_count == 3


def test_aws_probe_fields_fit_the_check() -> None:
    probe = AwsProbe.model_validate({"check": "sqs_depth", "queue_url": "https://sqs/q"})
    assert (probe.max_depth, probe.payload) == (0, "{}")


# --- checklists imported from runbooks: links, suggestions, sign-off lines (issue 11) -------

RUNBOOK = """\
# Runbook

## Checks

- [ ] API answers its health check <!-- probe: api-health -->
- [ ] Certificates renewed
  ```bash
  curl -fsS https://billing.example.com/health
  ```

## Approvals

- [ ] **QA Lead**: ________ Date: ______
- [ ] _Release Manager_: ________ Date: ______
"""


def test_a_markdown_item_links_a_probe_by_a_comment(workdir: Path) -> None:
    from bot.app.sessions import AUTOMATED, session_checklist

    (workdir / "runbook.md").write_text(RUNBOOK)
    config = load_config(write(workdir, CONFIG.replace("checklist.yaml", "runbook.md")))

    items = [item for _, item in config.checklist("prod").walk()]
    assert [(i.text, i.probe) for i in items] == [
        ("API answers its health check", "api-health"),
        ("Certificates renewed", None),  # a suggestion: Markdown links only what it says
    ]
    posted = session_checklist(config, "prod")
    assert [s.title for s in posted.sections] == ["Checks"]  # no "Automated checks" for it
    assert AUTOMATED not in {s.title for s in posted.sections}


def test_a_markdown_probe_comment_must_name_a_defined_probe(workdir: Path) -> None:
    (workdir / "runbook.md").write_text(RUNBOOK.replace("probe: api-health", "probe: smtp"))
    problems = problems_of(workdir, CONFIG.replace("checklist.yaml", "runbook.md"))
    assert problems == [
        "runbook.md: sections[0].items[0].probe: unknown probe 'smtp' (probes: api-health)"
    ]


def test_signoff_lines_the_environment_does_not_ask_for_are_warned_about(workdir: Path) -> None:
    (workdir / "runbook.md").write_text(RUNBOOK)
    config = load_config(write(workdir, CONFIG.replace("checklist.yaml", "runbook.md")))

    assert [(s.role, s.line) for s in config.checklist("prod").signoffs] == [
        ("QA Lead", 13),
        ("Release Manager", 14),
    ]
    assert config.warnings == [
        "runbook.md:14: sign-off 'Release Manager' is not asked for in environment 'prod': "
        "add it to environments.prod.signoffs, or nobody signs it"
    ]


def test_an_imported_checklist_loads_as_it_is(workdir: Path) -> None:
    from bot.runbook.parser import import_runbook

    (workdir / "checklist.yaml").write_text(import_runbook(RUNBOOK).to_yaml())

    assert problems_of(workdir, CONFIG) == []
    config = load_config("deploybot.yaml")
    items = [item for _, item in config.checklist("prod").walk()]
    # The suggested probe is not configured: its item is ticked by hand until it is.
    assert [i.probe for i in items] == ["api-health", None]
    assert config.warnings == [
        "checklist.yaml:20: suggested_probes: 1 suggested probe(s) not in the config: "
        "http-billing-example-com-health; define one under 'probes' by the same name and the "
        "items linking it are ticked by it",
        "checklist.yaml:19: sign-off 'Release Manager' is not asked for in environment 'prod': "
        "add it to environments.prod.signoffs, or nobody signs it",
    ]

    # Once the config defines a probe of that name, the item is linked to it.
    text = CONFIG.replace(
        "probes:\n  api-health:",
        "probes:\n  http-billing-example-com-health:\n    kind: http\n"
        "    url: https://billing.example.com/health\n  api-health:",
    )
    assert problems_of(workdir, text) == []
    config = load_config("deploybot.yaml")
    items = [item for _, item in config.checklist("prod").walk()]
    assert [i.probe for i in items] == ["api-health", "http-billing-example-com-health"]
    assert [w for w in config.warnings if "suggested" in w] == []


def test_a_link_to_neither_a_probe_nor_a_suggestion_is_an_error(workdir: Path) -> None:
    from bot.runbook.parser import import_runbook

    imported = import_runbook(RUNBOOK).to_yaml()
    (workdir / "checklist.yaml").write_text(
        imported.replace("probe: http-billing-example-com-health", "probe: billing")
    )
    assert problems_of(workdir, CONFIG) == [
        "checklist.yaml:16: sections[0].items[1].probe: unknown probe 'billing' "
        "(probes: api-health, http-billing-example-com-health)"
    ]
