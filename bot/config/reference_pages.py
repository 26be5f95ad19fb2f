"""The pages of the configuration reference: which model is documented under which heading.

:mod:`bot.config.reference` writes each page from its model; this table only orders them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from bot.config import deploy_specs as steps
from bot.config.change_control import Emergency, Promotion, Retrospective
from bot.config.checklist_files import ChecklistDocument, ProbeSuggestion, RollbackSuggestion
from bot.config.freezes import OneOffFreeze, RecurringFreeze
from bot.config.probe_specs import (
    AwsProbe,
    CloudWatchMetricProbe,
    CommandProbe,
    DatadogProbe,
    DnsProbe,
    HttpProbe,
    KubernetesProbe,
    PrometheusProbe,
    SqlProbe,
    TcpProbe,
    TlsProbe,
)
from bot.config.schema import (
    CommandRollback,
    Config,
    EcsRollback,
    Environment,
    Gates,
    KubernetesRollback,
    LambdaRollback,
    Monitoring,
    PagerDuty,
    Reminders,
    SignOffRequirement,
)
from bot.domain.checklist import ChecklistItem, Gate, Section, SignOffLine


@dataclass(frozen=True)
class Page:
    """One model's place in the reference: its heading (where it is written), its anchor,
    and the word other tables link to it by."""

    model: type[BaseModel]
    title: str
    anchor: str
    word: str


@dataclass(frozen=True)
class Part:
    """A group of models under one heading."""

    title: str
    intro: str
    pages: tuple[Page, ...]


PARTS: tuple[Part, ...] = (
    Part(
        "The config file",
        "One YAML file, `deploybot.yaml` by default (`$DEPLOYBOT_CONFIG`, `--config`). "
        "Check it with `deploybot config check FILE`: every error is reported with its "
        "file, line and key. Secrets never go in it: keys ending in `_env` (and the values "
        "of `headers_from_env`) name the environment variables that hold them.",
        (
            Page(Config, "Top level", "config", "config"),
            Page(Environment, "`environments.<name>`", "environment", "environment"),
            Page(SignOffRequirement, "`environments.<name>.signoffs[]`", "signoff", "sign-off"),
            Page(Gates, "`environments.<name>.gates`", "gates", "gates"),
            Page(
                Gate,
                "A gate (`gates.deploy`, `gates.complete`, a section's `gate`)",
                "gate",
                "gate",
            ),
            Page(PagerDuty, "`environments.<name>.pagerduty`", "pagerduty", "pagerduty"),
            Page(Monitoring, "`environments.<name>.monitoring`", "monitoring", "monitoring"),
            Page(Reminders, "`environments.<name>.reminders`", "reminders", "reminders"),
            Page(
                RecurringFreeze,
                "`environments.<name>.freezes[]` with `rrule`",
                "freeze-recurring",
                "recurring freeze",
            ),
            Page(
                OneOffFreeze,
                "`environments.<name>.freezes[]` with `from`",
                "freeze-one-off",
                "one-off freeze",
            ),
            Page(Promotion, "`environments.<name>.requires`", "promotion", "promotion order"),
            Page(Emergency, "`environments.<name>.emergency`", "emergency", "break-glass"),
            Page(
                Retrospective,
                "`environments.<name>.emergency.retrospective`",
                "retrospective",
                "retrospective",
            ),
        ),
    ),
    Part(
        "Probes",
        "`probes.<name>`: read-only checks, told apart by `kind`. Every kind also takes "
        "`timeout`, `severity` and `description`. A probe runs when an environment lists it "
        "under `probes` or a checklist item links it with `probe:`.",
        (
            Page(HttpProbe, "`kind: http`", "probe-http", "http probe"),
            Page(TcpProbe, "`kind: tcp`", "probe-tcp", "tcp probe"),
            Page(DnsProbe, "`kind: dns`", "probe-dns", "dns probe"),
            Page(TlsProbe, "`kind: tls`", "probe-tls", "tls probe"),
            Page(SqlProbe, "`kind: sql`", "probe-sql", "sql probe"),
            Page(KubernetesProbe, "`kind: kubernetes`", "probe-kubernetes", "kubernetes probe"),
            Page(AwsProbe, "`kind: aws`", "probe-aws", "aws probe"),
            Page(CommandProbe, "`kind: command`", "probe-command", "command probe"),
            Page(PrometheusProbe, "`kind: prometheus`", "probe-prometheus", "prometheus probe"),
            Page(
                CloudWatchMetricProbe,
                "`kind: cloudwatch_metric`",
                "probe-cloudwatch-metric",
                "cloudwatch_metric probe",
            ),
            Page(DatadogProbe, "`kind: datadog`", "probe-datadog", "datadog probe"),
        ),
    ),
    Part(
        "Rollback targets",
        "`environments.<name>.rollback[]`: what the Roll back button runs, in order, each "
        "once, told apart by `kind`; then the probes run again to verify.",
        (
            Page(
                KubernetesRollback,
                "`kind: kubernetes`",
                "rollback-kubernetes",
                "kubernetes rollback",
            ),
            Page(EcsRollback, "`kind: ecs`", "rollback-ecs", "ecs rollback"),
            Page(LambdaRollback, "`kind: lambda`", "rollback-lambda", "lambda rollback"),
            Page(CommandRollback, "`kind: command`", "rollback-command", "command rollback"),
        ),
    ),
    Part(
        "Deploy steps",
        "`environments.<name>.deploy` (or `environments.<name>.services.<service>.deploy`): "
        "what *Start deployment* runs, in order, each once; then verification starts. Steps "
        "template `{version}`, `{service}`, `{previous_version}`, `{environment}` and "
        "`{session}`; `deploybot deploy plan ENV VERSION` shows what they would do.",
        (
            Page(steps.DeployPlan, "`environments.<name>.deploy`", "deploy", "deploy plan"),
            Page(
                steps.ServiceSettings,
                "`environments.<name>.services.<service>`",
                "service",
                "service settings",
            ),
            Page(steps.KubernetesStep, "`kind: kubernetes`", "step-kubernetes", "kubernetes step"),
            Page(steps.CommandStep, "`kind: command`", "step-command", "command step"),
            Page(steps.PauseStep, "`kind: pause`", "step-pause", "pause step"),
        ),
    ),
    Part(
        "Checklist files",
        "The YAML file an environment's `checklist` names (a Markdown runbook works too: "
        "`deploybot checklist import RUNBOOK.md` shows what it becomes).",
        (
            Page(ChecklistDocument, "Top level", "checklist", "checklist"),
            Page(Section, "`sections[]`", "section", "section"),
            Page(ChecklistItem, "`items[]` (and `children[]`)", "item", "item"),
            Page(SignOffLine, "`signoffs[]`", "checklist-signoff", "checklist sign-off"),
            Page(ProbeSuggestion, "`suggested_probes[]`", "suggested-probe", "suggested probe"),
            Page(
                RollbackSuggestion,
                "`suggested_rollback[]`",
                "suggested-rollback",
                "suggested rollback target",
            ),
        ),
    ),
)

MODELS: tuple[type[BaseModel], ...] = tuple(page.model for part in PARTS for page in part.pages)
"""Every model the reference documents."""
