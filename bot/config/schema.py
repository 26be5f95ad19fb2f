"""The deploybot configuration file: roles, probes and environments, validated with locations.

``load_config`` reads one YAML file (``deploybot.yaml`` or ``$DEPLOYBOT_CONFIG``), validates it
and every checklist it names, and raises ``ConfigError`` listing every problem at once, each as
``file:line: yaml.path: what is wrong``. Secrets are never in the file: it names the
environment variables that hold them.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.config.change_control import Emergency, Promotion
from bot.config.checklist_files import load_checklist
from bot.config.deploy_specs import DeployPlan, ServiceSettings
from bot.config.errors import unknown_names
from bot.config.freezes import Freeze
from bot.config.probe_specs import Duration, EnvVarName, ProbeSpec
from bot.domain.checklist import Checklist, Gate, slugify
from bot.domain.errors import NotFound

DEFAULT_PATH = "deploybot.yaml"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MEMBER = re.compile(r"[UW][A-Z0-9]{2,}|S[A-Z0-9]{2,}|@[A-Za-z0-9][A-Za-z0-9._-]*")
_CHANNEL = re.compile(r"#[a-z0-9][a-z0-9_-]{0,79}|[CG][A-Z0-9]{2,}")
_MONITORING = re.compile(r"every\s+(\S+)\s+for\s+(\S+)")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "name", "'{value}' is not a name: use letters, digits, '-', '_', '.'", {"value": value}
        )
    return value


def _member(value: str) -> str:
    if not _MEMBER.fullmatch(value):
        raise PydanticCustomError(
            "member",
            "'{value}' is not a Slack user ID (U…, W…), user-group ID (S…) or handle (@team)",
            {"value": value},
        )
    return value


def _channel(value: str) -> str:
    if not _CHANNEL.fullmatch(value):
        raise PydanticCustomError(
            "channel", "'{value}' is not a channel: write '#name' or its ID (C…)", {"value": value}
        )
    return value


def _references(kind: str, plural: str) -> AfterValidator:
    """Check names against those the file defines (``context[plural]``, when given)."""

    def check(names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        message = unknown_names(names, (info.context or {}).get(plural), kind, plural)
        if message:
            raise PydanticCustomError("unknown_reference", message)
        return names

    return AfterValidator(check)


Name = Annotated[str, AfterValidator(_name)]
Members = Annotated[tuple[Annotated[str, AfterValidator(_member)], ...], Field(min_length=1)]
Channel = Annotated[str, AfterValidator(_channel)]
RoleRefs = Annotated[tuple[str, ...], _references("role", "roles")]
ProbeRefs = Annotated[tuple[str, ...], _references("probe", "probes")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignOffRequirement(_Strict):
    """A sign-off a deploy needs: ``role`` is the name people read, ``by`` who may sign it."""

    role: str = Field(min_length=1)
    by: RoleRefs = Field(min_length=1)
    count: int = Field(1, ge=1)
    valid_for: Duration | None = None

    @property
    def key(self) -> str:
        """The sign-off's id in gates and buttons: ``"DevOps Lead"`` -> ``"devops-lead"``."""
        return slugify(self.role)


class PagerDuty(_Strict):
    """Where incidents page: the env variable holding the Events API v2 routing key."""

    routing_key_env: EnvVarName


class KubernetesRollback(_Strict):
    """``kubectl rollout undo`` of one Deployment."""

    kind: Literal["kubernetes"] = "kubernetes"
    deployment: str = Field(min_length=1)
    namespace: str = "default"
    context: str | None = None
    timeout: Duration = timedelta(minutes=5)


class EcsRollback(_Strict):
    """Point an ECS service back at its previous task definition."""

    kind: Literal["ecs"] = "ecs"
    cluster: str = Field(min_length=1)
    service: str = Field(min_length=1)
    region: str | None = None
    timeout: Duration = timedelta(minutes=10)


class LambdaRollback(_Strict):
    """Point a Lambda alias back at the version it pointed to before."""

    kind: Literal["lambda"] = "lambda"
    function: str = Field(min_length=1)
    alias: str = Field(min_length=1)
    region: str | None = None
    timeout: Duration = timedelta(minutes=1)


class CommandRollback(_Strict):
    """Run a command (no shell); ``env`` names variables passed through to it."""

    kind: Literal["command"] = "command"
    argv: tuple[str, ...] = Field(min_length=1)
    timeout: Duration = timedelta(minutes=5)
    env: tuple[EnvVarName, ...] = ()


RollbackTarget = Annotated[
    KubernetesRollback | EcsRollback | LambdaRollback | CommandRollback,
    Field(discriminator="kind"),
]


class Monitoring(_Strict):
    """Re-run the probes ``every`` so often ``for_`` so long after a deploy.

    Written ``"every 5m for 1h"`` or ``{every: 5m, for: 1h}``.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )

    every: Duration
    for_: Duration = Field(alias="for")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        match = _MONITORING.fullmatch(data.strip())
        if not match:
            raise PydanticCustomError(
                "schedule", "bad schedule '{value}': use e.g. 'every 5m for 1h'", {"value": data}
            )
        return {"every": match[1], "for": match[2]}

    @model_validator(mode="after")
    def _every_within_window(self) -> Monitoring:
        if self.every > self.for_:
            raise PydanticCustomError("schedule", "'every' must not be longer than 'for'")
        return self


class Reminders(_Strict):
    """Nudge the missing sign-offs once a session has waited ``after``, then ``every`` so
    often, ``max`` times at most."""

    after: Duration
    every: Duration | None = Field(
        None, description="How often to remind again after the first; `after` if absent."
    )
    max: int = Field(3, ge=1, le=100, description="How many reminders a session gets at most.")

    @property
    def interval(self) -> timedelta:
        return self.every or self.after


class Gates(_Strict):
    """Phase gates; omitted sign-offs default to every required sign-off."""

    deploy: Gate | None = None
    complete: Gate | None = None


def _default_incident_channel(data: dict[str, Any]) -> Any:
    return data.get("channel", "")


def _default_operators(data: dict[str, Any]) -> Any:
    return data.get("starters", ())


# The policy table's parties that can be named for an environment (not a session's signer).
ReportReader = Literal["anyone", "requester", "operators", "starters", "approvers", "oncall"]


class Environment(_Strict):
    """One deploy target (``prod``): its channels, checklist, people, probes and rollback."""

    channel: Channel
    incident_channel: Channel = Field(default_factory=_default_incident_channel)
    checklist: str = Field(min_length=1)
    starters: RoleRefs = Field(min_length=1)
    operators: RoleRefs = Field(default_factory=_default_operators)
    oncall: RoleRefs = ()
    signoffs: tuple[SignOffRequirement, ...] = ()
    separation_of_duties: bool = True
    gates: Gates = Gates()
    probes: ProbeRefs = ()
    pagerduty: PagerDuty | None = None
    rollback: tuple[RollbackTarget, ...] = ()
    deploy: DeployPlan | None = None
    services: dict[Name, ServiceSettings] = Field(default_factory=dict)
    rollback_verify: Monitoring = Field(
        default_factory=lambda: Monitoring(every=timedelta(seconds=10), for_=timedelta(minutes=3)),
        description="How a rollback is verified: probe rounds `every` so often until they "
        "pass or `for` has passed (a rollback may take a while to take effect), written "
        "like `every 10s for 3m`.",
    )
    monitoring: Monitoring | None = None
    reminders: Reminders | None = None
    expire_after: Duration = timedelta(hours=24)
    queue_turn: Duration = Field(
        timedelta(minutes=15),
        description="When the environment frees up, how long the next in its deploy queue "
        "has to start their deploy before the turn passes to the one after.",
    )
    freezes: tuple[Freeze, ...] = ()
    freeze_override: RoleRefs = Field(
        (), description="Roles that may start and deploy during a freeze, with a reason."
    )
    requires: Promotion | None = Field(
        None, description="Promotion order: a version deploys here only after it completed there."
    )
    emergency: Emergency | None = Field(
        None, description="Break-glass: who may deploy as an emergency and what that skips."
    )
    reports: tuple[ReportReader, ...] = Field(
        ("anyone",),
        min_length=1,
        description="Who may read a deploy's report with `/deploy report`: `anyone` in the "
        "workspace (the default), or any of `requester`, `operators`, `starters`, "
        "`approvers` (the sign-off roles) and `oncall`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        # ``incident_channel: null`` and ``operators: []`` read as "the default".
        if isinstance(data, dict):
            blank = {"incident_channel", "operators"}
            return {k: v for k, v in data.items() if k not in blank or v}
        return data

    @field_validator("signoffs")
    @classmethod
    def _keys_unique(
        cls, signoffs: tuple[SignOffRequirement, ...]
    ) -> tuple[SignOffRequirement, ...]:
        seen: dict[str, str] = {}
        for signoff in signoffs:
            if signoff.key in seen:
                raise PydanticCustomError(
                    "duplicate_signoff",
                    "sign-offs '{a}' and '{b}' share the key '{key}'",
                    {"a": seen[signoff.key], "b": signoff.role, "key": signoff.key},
                )
            seen[signoff.key] = signoff.role
        return signoffs

    @model_validator(mode="after")
    def _emergency_skips_known_signoffs(self) -> Environment:
        unknown = self.emergency.unknown_signoffs(self.signoff_keys) if self.emergency else []
        if unknown:
            raise PydanticCustomError(
                "unknown_reference",
                "emergency.skip_signoffs names {names}, not a sign-off of this environment",
                {"names": ", ".join(unknown)},
            )
        return self

    @property
    def signoff_keys(self) -> tuple[str, ...]:
        """The keys of the required sign-offs, in order (``("qa-lead", "devops-lead")``)."""
        return tuple(signoff.key for signoff in self.signoffs)

    @property
    def effective_operators(self) -> tuple[str, ...]:
        """The roles that run a session; ``operators`` already defaults to ``starters``."""
        return self.operators

    @property
    def deploy_gate(self) -> Gate:
        """What must be in before deploying starts (default: every required sign-off)."""
        return self._with_default_signoffs(self.gates.deploy)

    @property
    def complete_gate(self) -> Gate:
        """What must be in before the deploy completes (default: every required sign-off)."""
        return self._with_default_signoffs(self.gates.complete)

    def _with_default_signoffs(self, gate: Gate | None) -> Gate:
        if gate is None:
            return Gate(signoffs=self.signoff_keys)
        if "signoffs" not in gate.model_fields_set:
            return gate.model_copy(update={"signoffs": self.signoff_keys})
        return gate


class Config(_Strict):
    """The whole configuration. Build it with ``load_config``."""

    roles: dict[Name, Members] = Field(default_factory=dict)
    probes: dict[Name, ProbeSpec] = Field(default_factory=dict)
    environments: dict[Name, Environment] = Field(min_length=1)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default=DEFAULT_PATH)
    _checklists: dict[str, Checklist] = PrivateAttr(default_factory=dict)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: {} if k in ("roles", "probes") and v is None else v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _promotions_known(self) -> Config:
        for name, env in self.environments.items():
            source = env.requires.environment if env.requires else None
            if source is not None and (source == name or source not in self.environments):
                raise PydanticCustomError(
                    "unknown_reference",
                    "environments.{name}.requires.environment: '{source}' is not another "
                    "environment (known: {known})",
                    {"name": name, "source": source, "known": ", ".join(self.environments)},
                )
        return self

    @property
    def base_dir(self) -> Path:
        """The config file's folder; checklist paths are relative to it."""
        return self._base_dir

    @property
    def warnings(self) -> list[str]:
        """What ``load_config`` found that loads but deserves a look (``file:line: ...``)."""
        return self._warnings

    @property
    def source(self) -> str:
        """The config file's name as it was given."""
        return self._source

    def environment_named(self, name: str) -> str:
        """The environment's name as the config writes it, for ``name`` as a person typed
        it (``STAGING`` finds ``staging``, unless the config has both).

        Raises:
            NotFound: No such environment; the message names the known ones.
        """
        if name in self.environments:
            return name
        alike = [known for known in self.environments if known.casefold() == name.casefold()]
        if len(alike) == 1:
            return alike[0]
        self.environment(name)  # raises NotFound, naming the known ones
        return name

    def environment(self, name: str) -> Environment:
        """The environment called ``name``.

        Raises:
            NotFound: No such environment; the message names the known ones.
        """
        if name not in self.environments:
            known = ", ".join(sorted(self.environments))
            raise NotFound(f"Unknown environment '{name}'. Known: {known}.")
        return self.environments[name]

    def checklist(self, env_name: str) -> Checklist:
        """The environment's checklist, numbered (loaded once, then cached).

        Raises:
            NotFound: No such environment.
            ConfigError: The checklist file is missing or invalid.
        """
        environment = self.environment(env_name)
        if env_name not in self._checklists:
            shared = (
                self._checklists[other]
                for other, env in self.environments.items()
                if other in self._checklists and env.checklist == environment.checklist
            )
            self._checklists[env_name] = next(shared, None) or load_checklist(
                self._base_dir / environment.checklist, probes=tuple(self.probes)
            )
        return self._checklists[env_name]

    def members(self, role: str) -> tuple[str, ...]:
        """The Slack user IDs, user-group IDs and ``@handles`` in ``role``.

        Raises:
            NotFound: No such role.
        """
        if role not in self.roles:
            raise NotFound(f"Unknown role '{role}'. Known: {', '.join(sorted(self.roles))}.")
        return self.roles[role]
