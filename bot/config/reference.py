"""The configuration reference, generated from the config schema so that it cannot drift.

:func:`config_reference` walks the pydantic models that read ``deploybot.yaml`` and the
checklist files, and writes every key with its type, default, whether it is required and
what it does. Keys, types and defaults come from the models; what a key does comes from its
``Field(description=...)`` when it has one, else from :data:`DESCRIPTIONS` (tests fail when a
key has neither, or when that table names a key that no longer exists).
``deploybot config reference`` prints it; ``docs/config-reference.md`` is its output.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from bot.config.probe_specs import (
    AwsProbe,
    CommandProbe,
    DnsProbe,
    Duration,
    EnvVarName,
    HttpProbe,
    KubernetesProbe,
    Port,
    ProbeSpec,
    SqlProbe,
    TcpProbe,
    TlsProbe,
    format_duration,
)
from bot.config.schema import (
    Channel,
    CommandRollback,
    Config,
    EcsRollback,
    Environment,
    Gates,
    KubernetesRollback,
    LambdaRollback,
    Members,
    Monitoring,
    Name,
    PagerDuty,
    ProbeRefs,
    Reminders,
    RoleRefs,
    RollbackTarget,
    SignOffRequirement,
)
from bot.domain.checklist import Checklist, ChecklistItem, Gate, Section


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
        "Checklist files",
        "The YAML file an environment's `checklist` names (a Markdown runbook works too: "
        "`deploybot checklist import RUNBOOK.md` shows what it becomes).",
        (
            Page(Checklist, "Top level", "checklist", "checklist"),
            Page(Section, "`sections[]`", "section", "section"),
            Page(ChecklistItem, "`items[]` (and `children[]`)", "item", "item"),
        ),
    ),
)

MODELS: tuple[type[BaseModel], ...] = tuple(page.model for part in PARTS for page in part.pages)
"""Every model the reference documents."""

# Value types with a name of their own, and the words the reference uses for them.
_NAMED_TYPES: tuple[tuple[object, str], ...] = (
    (Duration, "[duration](#duration)"),
    (EnvVarName, "[env var name](#env-var-name)"),
    (Channel, "[channel](#channel)"),
    (Name, "[name](#name)"),
    (Members, "list of [members](#member)"),
    (RoleRefs, "list of role names"),
    (ProbeRefs, "list of probe names"),
    (Port, "port"),
    (RollbackTarget, "[rollback target](#rollback-targets) (by `kind`)"),
    (ProbeSpec, "[probe](#probes) (by `kind`)"),
)

VALUE_TYPES = """\
## Value types

<a id="duration"></a>**duration**: a positive length of time: `30s`, `5m`, `1h30m`, `2d`,
`250ms`, or a whole number of seconds.

<a id="env-var-name"></a>**env var name**: the *name* of an environment variable
(`[A-Z_][A-Z0-9_]*`, like `DATABASE_URL`), never its value.

<a id="channel"></a>**channel**: a Slack channel as `#name` or its ID (`C…`, `G…`).

<a id="name"></a>**name**: letters, digits, `-`, `_` and `.`, starting with a letter or digit.

<a id="member"></a>**member**: a Slack user ID (`U…`, `W…`), a user-group ID (`S…`) or a
user-group handle (`@release-managers`).
"""

DESCRIPTIONS: dict[tuple[str, str], str] = {
    # Config
    ("Config", "roles"): "Named groups of people. Other keys refer to these names.",
    ("Config", "probes"): "Probes by name, for environments and checklist items to use.",
    ("Config", "environments"): "Deploy targets by name (`prod`, `staging`); at least one.",
    # Environment
    ("Environment", "channel"): "Where sessions are posted and worked.",
    ("Environment", "incident_channel"): "Where incident threads open when a probe fails.",
    ("Environment", "checklist"): "The checklist file (YAML or Markdown), relative to the "
    "config file.",
    ("Environment", "starters"): "Roles that may start a deploy here (and lock or unlock it).",
    ("Environment", "operators"): "Roles that run a session besides its requester: start and "
    "finish the deployment, run probes, abort.",
    ("Environment", "oncall"): "Roles paged and asked to respond to incidents (acknowledge, "
    "roll back, resolve), with the sign-off roles.",
    ("Environment", "signoffs"): "Sign-offs a deploy needs, each from its own roles.",
    ("Environment", "separation_of_duties"): "Whether the requester is refused as a signer "
    "of their own deploy.",
    ("Environment", "gates"): "What must be in before deploying starts and before the "
    "deploy completes.",
    ("Environment", "probes"): "Probes that run for every session, linked to an item or not.",
    ("Environment", "pagerduty"): "Page on-call when a critical probe fails; no paging if absent.",
    ("Environment", "rollback"): "What the Roll back button runs, in order.",
    ("Environment", "monitoring"): "Re-run the probes on a schedule after the deploy; no "
    "monitoring if absent.",
    ("Environment", "reminders"): "Nudge missing sign-offs; no reminders if absent.",
    ("Environment", "expire_after"): "A session still open this long is aborted and frees "
    "the environment.",
    # SignOffRequirement
    ("SignOffRequirement", "role"): "The sign-off's name as people read it (`QA Lead`); its "
    "key in gates is the slug (`qa-lead`).",
    ("SignOffRequirement", "by"): "Roles whose members may give this sign-off.",
    # Gates and Gate
    ("Gates", "deploy"): "What must be in before deploying starts.",
    ("Gates", "complete"): "What must be in before the deploy completes.",
    ("Gate", "after"): "Section ids (slugs of titles) whose items must all be done or skipped.",
    ("Gate", "signoffs"): "Sign-off keys (`qa-lead`) that must be given.",
    # PagerDuty, Monitoring, Reminders
    ("PagerDuty", "routing_key_env"): "The variable holding the Events API v2 routing key.",
    ("Monitoring", "every"): "How often the probes run again.",
    ("Monitoring", "for_"): "How long after the deploy; the session completes at the end if "
    "nothing is missing.",
    ("Reminders", "after"): "Wait this long for missing sign-offs before the first nudge, "
    "and between nudges.",
    # Every probe kind
    ("ProbeBase", "timeout"): "The longest one run may take; past it, the probe fails.",
    ("ProbeBase", "severity"): "`critical`: a failure after deployment fails the session and "
    "pages; `warning`: it is shown only.",
    ("ProbeBase", "description"): "What the probe checks, in words; names it on the checklist.",
    # HTTP
    ("HttpProbe", "url"): "The http(s) URL to request.",
    ("HttpProbe", "method"): "The request method.",
    ("HttpProbe", "headers_from_env"): "Request headers, each value read from the named "
    "variable (`Authorization: API_TOKEN`).",
    ("HttpProbe", "expect_status"): "Status codes that pass.",
    ("HttpProbe", "body_contains"): "Text the body must contain.",
    ("HttpProbe", "json_path"): "A dotted path into a JSON body (`checks.db`, `items.0.ok`) "
    "that must exist.",
    ("HttpProbe", "json_value"): "The value expected at `json_path`.",
    ("HttpProbe", "max_latency"): "Slower answers fail.",
    ("HttpProbe", "follow_redirects"): "Follow redirects rather than judge the redirect itself.",
    ("HttpProbe", "verify_tls"): "Verify the server's certificate.",
    # TCP
    ("TcpProbe", "host"): "Host name or address to connect to.",
    ("TcpProbe", "port"): "TCP port.",
    ("TcpProbe", "send"): "A line to send once connected (`PING`; `\\r\\n` is added).",
    ("TcpProbe", "expect_banner"): "Text the reply must contain (`+PONG`, `220`); without it, "
    "connecting is the check.",
    # DNS
    ("DnsProbe", "name"): "The name to resolve.",
    ("DnsProbe", "record_type"): "The record type to ask for.",
    ("DnsProbe", "contains"): "Text one answer must contain.",
    ("DnsProbe", "nameserver"): "Ask this server (an IP address) instead of the system resolver.",
    ("DnsProbe", "port"): "The nameserver's port.",
    # TLS
    ("TlsProbe", "host"): "Host to connect to.",
    ("TlsProbe", "port"): "TLS port.",
    ("TlsProbe", "server_name"): "Name for SNI and the certificate check.",
    ("TlsProbe", "min_days"): "Days the certificate must stay valid.",
    ("TlsProbe", "ca_file"): "CA bundle to verify against instead of the system's.",
    # SQL
    ("SqlProbe", "url_env"): "The variable holding the database URL.",
    ("SqlProbe", "query"): "The query, run in a transaction that is rolled back.",
    ("SqlProbe", "expect"): "The value the first column of the first row must equal.",
    # Kubernetes probe
    ("KubernetesProbe", "check"): "`rollout`: the Deployment's rollout finished, as "
    "`kubectl rollout status` judges; `pods`: the pods matching `selector` are ready; "
    "`nodes`: every node is ready.",
    ("KubernetesProbe", "deployment"): "The Deployment (for `rollout`).",
    ("KubernetesProbe", "namespace"): "The namespace.",
    ("KubernetesProbe", "selector"): "Label selector of the pods (for `pods`): `app=api`.",
    ("KubernetesProbe", "context"): "Kubeconfig context (`KUBECONFIG`, else ~/.kube/config); "
    "without a kubeconfig, the pod's service account.",
    # AWS probe
    ("AwsProbe", "check"): "Which check: see the kinds above; each needs its own fields.",
    ("AwsProbe", "region"): "AWS region.",
    ("AwsProbe", "alarm_prefix"): "`cloudwatch_alarms`: no alarm named with this prefix is "
    "in ALARM.",
    ("AwsProbe", "queue_name"): "`sqs_depth`: the queue, by name.",
    ("AwsProbe", "queue_url"): "`sqs_depth`: the queue, by URL.",
    ("AwsProbe", "max_depth"): "`sqs_depth`: most messages that may wait.",
    ("AwsProbe", "table"): "`dynamodb_pitr`: the table whose point-in-time recovery must be on.",
    ("AwsProbe", "identity"): "`ses_identity`: the domain or address that must be verified.",
    ("AwsProbe", "function"): "`lambda_invoke`: the function to invoke.",
    ("AwsProbe", "payload"): "`lambda_invoke`: the JSON event to send.",
    # Command probe
    ("CommandProbe", "argv"): "The command and its arguments, run without a shell.",
    ("CommandProbe", "expect_exit"): "The exit status that passes.",
    ("CommandProbe", "output_pattern"): "A regular expression stdout and stderr must match.",
    ("CommandProbe", "env"): "Variables passed to the command; it sees no others (not even "
    "`PATH`).",
    # Rollbacks
    ("KubernetesRollback", "deployment"): "The Deployment to undo (`kubectl rollout undo`).",
    ("KubernetesRollback", "namespace"): "Its namespace.",
    ("KubernetesRollback", "context"): "Kubeconfig context (`KUBECONFIG`, else "
    "~/.kube/config); without a kubeconfig, the pod's service account.",
    ("KubernetesRollback", "timeout"): "How long the rollout may take to finish.",
    ("EcsRollback", "cluster"): "The ECS cluster.",
    ("EcsRollback", "service"): "The service to point back at its previous task definition.",
    ("EcsRollback", "region"): "AWS region.",
    ("EcsRollback", "timeout"): "How long the service may take to become stable.",
    ("LambdaRollback", "function"): "The Lambda function.",
    ("LambdaRollback", "alias"): "The alias to point back at its previous version.",
    ("LambdaRollback", "region"): "AWS region.",
    ("LambdaRollback", "timeout"): "How long the change may take.",
    ("CommandRollback", "argv"): "The command and its arguments, run without a shell.",
    ("CommandRollback", "timeout"): "How long it may run.",
    ("CommandRollback", "env"): "Variables passed to the command; it sees no others.",
    # Checklist files
    ("Checklist", "title"): "The checklist's title in Slack.",
    ("Checklist", "sections"): "Sections, in order.",
    ("Section", "title"): "The section's title.",
    ("Section", "id"): "Its id in gates (`Pre-Deployment` -> `pre-deployment`).",
    ("Section", "gate"): "What must be in before this section opens.",
    ("Section", "items"): "Items to tick, in order.",
    ("ChecklistItem", "text"): "What to do or check.",
    ("ChecklistItem", "id"): "Its id (`2.5.1`: section 2, item 5, child 1).",
    ("ChecklistItem", "probe"): "A probe (by name) that ticks this item when it passes.",
    ("ChecklistItem", "severity"): "`critical` or `warning`: how serious a failure of the "
    "linked probe is for this item, overriding the probe's own `severity` (if any item a "
    "probe ticks is critical, its failure is critical).",
    ("ChecklistItem", "children"): "Items under this one.",
}

DEFAULTS_IN_WORDS: dict[tuple[str, str], str] = {
    ("Environment", "incident_channel"): "the `channel`",
    ("Environment", "operators"): "the `starters`",
    ("Gates", "deploy"): "every required sign-off",
    ("Gates", "complete"): "every required sign-off",
    ("TlsProbe", "server_name"): "the `host`",
    ("AwsProbe", "region"): "`AWS_REGION`, else `AWS_DEFAULT_REGION`",
    ("KubernetesProbe", "context"): "the current context, else in-cluster",
    ("KubernetesRollback", "context"): "the current context, else in-cluster",
    ("EcsRollback", "region"): "`AWS_REGION`, else `AWS_DEFAULT_REGION`",
    ("LambdaRollback", "region"): "`AWS_REGION`, else `AWS_DEFAULT_REGION`",
    ("Section", "id"): "the slug of the `title`",
    ("ChecklistItem", "id"): "its position (`2.5.1`)",
}
"""Defaults the schema cannot state as a value: taken from other keys, or found at run time."""


def config_reference() -> str:
    """The Markdown reference of every configuration and checklist key.

    Returns:
        The document ``docs/config-reference.md`` holds, ending in a newline.
    """
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated from the configuration schema (bot/config/schema.py,",
        "     bot/config/probe_specs.py, bot/domain/checklist.py) by `deploybot config reference`.",
        "     Do not edit: regenerate with",
        "     `deploybot config reference > docs/config-reference.md`. -->",
        "",
        "Every key deploybot reads from its config file and from checklist files. "
        "*Required* keys have no default.",
        "",
    ]
    for part in PARTS:
        out += [f"- [{part.title}](#{_slug(part.title)})"]
        out += [f"  - [{page.title}](#{page.anchor})" for page in part.pages]
    out += ["- [Value types](#value-types)", ""]
    for part in PARTS:
        out += [f"## {part.title}", "", part.intro, ""]
        for page in part.pages:
            out += _model_section(page)
    out.append(VALUE_TYPES)
    return "\n".join(out).rstrip("\n") + "\n"


@dataclass(frozen=True)
class Key:
    """One key of one model, as the reference shows it."""

    model: type[BaseModel]
    name: str  # the attribute (``for_``)
    key: str  # as written in YAML (``for``)
    type: str
    required: bool
    default: str
    description: str


def keys(model: type[BaseModel]) -> Iterator[Key]:
    """The keys of ``model``, in declaration order (inherited ones first)."""
    hints = typing.get_type_hints(model, include_extras=True)
    for name, field in model.model_fields.items():
        # A kind's `kind` has a default in its model, but the union needs it to pick the model.
        selector = name == "kind" and typing.get_origin(field.annotation) is Literal
        yield Key(
            model=model,
            name=name,
            key=field.alias or name,
            type=_describe_type(hints[name], field),
            required=selector or field.is_required(),
            default="" if selector else _default(model, name, field),
            description=description(model, name),
        )


def description(model: type[BaseModel], name: str) -> str:
    """What key ``name`` of ``model`` does: its Field description, else the table's."""
    field = model.model_fields[name]
    if field.description:
        return field.description
    if name == "kind" and typing.get_origin(field.annotation) is Literal:
        return "Selects this kind."
    return DESCRIPTIONS.get((_defining_class(model, name).__name__, name), "")


def _model_section(page: Page) -> list[str]:
    doc = inspect.cleandoc(vars(page.model).get("__doc__") or "")  # its own, not BaseModel's
    for name, field in page.model.model_fields.items():  # users write the alias (``for``)
        if field.alias and field.alias != name:
            doc = doc.replace(f"``{name}``", f"``{field.alias}``")
    doc = _markdown(doc)
    out = [f'<a id="{page.anchor}"></a>', f"### {page.title}", ""]
    if doc and page.model is not Config:
        out += [doc, ""]
    out += ["| Key | Type | Required | Default | Description |", "| --- | --- | --- | --- | --- |"]
    for key in keys(page.model):
        required = "yes" if key.required else ""
        out.append(
            f"| `{key.key}` | {key.type} | {required} | {key.default} | {_cell(key.description)} |"
        )
    return [*out, ""]


def _describe_type(hint: object, field: FieldInfo) -> str:
    text = _type_text(hint)
    limits = _limits(field.metadata)
    return f"{text} ({limits})" if limits else text


def _type_text(hint: object, *, plural: bool = False) -> str:
    for named, words in _NAMED_TYPES:
        if hint == named:
            return words
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        inner = _type_text(args[0], plural=plural)
        limits = _limits([m for extra in args[1:] for m in _metadata_of(extra)])
        return f"{inner} {limits}" if limits else inner
    if origin in (Union, types.UnionType):
        options = [_type_text(a) for a in args if a is not type(None)]
        return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args) if len(args) > 1 else f"`{args[0]}`"
    if origin in (tuple, list):
        return f"list of {_type_text(args[0], plural=True)}"
    if origin is dict:
        return f"mapping of {_type_text(args[0])} to {_type_text(args[1])}"
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        page = next((p for part in PARTS for p in part.pages if p.model is hint), None)
        if page is None:
            return hint.__name__
        return f"[{page.word}{'s' if plural else ''}](#{page.anchor})"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in hint)
    if hint is timedelta:
        return "[duration](#duration)"
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if isinstance(hint, type) and hint in simple:
        return simple[hint] + ("s" if plural else "")
    return str(hint)


def _metadata_of(extra: object) -> list[object]:
    return list(extra.metadata) if isinstance(extra, FieldInfo) else [extra]


def _limits(metadata: list[object]) -> str:
    """``from 1 to 65535``, ``≥ 0``, ``not empty``: the bounds pydantic checks."""
    low = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    size = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), 0)
    found = []
    if low is not None and high is not None:
        found.append(f"from {low} to {high}")
    elif low is not None:
        found.append(f"≥ {low}")
    elif high is not None:
        found.append(f"≤ {high}")
    if size == 1:
        found.append("not empty")
    elif size:
        found.append(f"at least {size}")
    return ", ".join(found)


def _default(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    if field.is_required():
        return ""
    derived = DEFAULTS_IN_WORDS.get((_defining_class(model, name).__name__, name))
    if derived is not None:
        return derived
    if field.default_factory is not None:
        if field.default_factory_takes_validated_data:
            raise ValueError(f"{model.__name__}.{name}: add its default to DEFAULTS_IN_WORDS")
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    return _value(value)


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, timedelta):
        return f"`{format_duration(value)}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value, default=str)}`"


def _defining_class(model: type[BaseModel], name: str) -> type:
    """The class in ``model``'s ancestry that declares ``name`` (``ProbeBase`` for ``timeout``)."""
    for cls in reversed(model.__mro__):
        if name in getattr(cls, "__annotations__", {}):
            return cls
    return model


def _markdown(doc: str) -> str:
    return doc.replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _slug(title: str) -> str:
    return "-".join(title.lower().split())
