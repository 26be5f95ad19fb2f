"""Deploy steps: what the bot itself does to deploy a version, in order.

An environment (or one of its ``services``) declares ``deploy:``: its ``steps`` and what
happens when one fails (``on_failure``). Steps template the session's version, service,
previous version and environment (``image: registry.example.com/api:{version}``); those
values come from ``/deploy start`` and are checked against :data:`VERSION` first, and a
template never reaches a shell (commands are argv lists).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from bot.config.errors import unknown_names
from bot.config.probe_specs import Duration, EnvVarName
from bot.domain.errors import DomainError
from bot.domain.step_progress import StepProgress

PLACEHOLDERS = ("version", "service", "previous_version", "environment", "session")
# What a version may be when steps template it: an OCI image tag's grammar.
VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def placeholders(template: str) -> list[str]:
    """The ``{names}`` a template uses (``{{`` and ``}}`` are literal braces)."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise PydanticCustomError(
            "template", "bad template: {error}", {"error": str(error)}
        ) from None


def _template(value: str) -> str:
    for name in placeholders(value):
        if name not in PLACEHOLDERS:
            raise PydanticCustomError(
                "template",
                "unknown placeholder '{placeholder}' (known: {known})",
                {
                    "placeholder": "{" + name + "}",
                    "known": ", ".join("{" + p + "}" for p in PLACEHOLDERS),
                },
            )
    return value


def _roles(names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    message = unknown_names(names, (info.context or {}).get("roles"), "role", "roles")
    if message:
        raise PydanticCustomError("unknown_reference", message)
    return names


Template = Annotated[str, Field(min_length=1), AfterValidator(_template)]
Roles = Annotated[tuple[str, ...], AfterValidator(_roles)]
OnFailure = Literal["rollback", "ask"]


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its placeholders filled in (no format specs, no attribute access)."""
    return "".join(
        literal + (values[name] if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(template)
    )


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="How the summary and thread name the step.")


class KubernetesStep(_Step):
    """Set the image of named containers in named Deployments, as ``kubectl set image``
    does, then wait until the rollout is done as ``kubectl rollout status`` judges it."""

    kind: Literal["kubernetes"] = "kubernetes"
    deployments: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    containers: dict[str, Template] = Field(
        min_length=1, description="Container name: image, e.g. `api: registry/api:{version}`."
    )
    namespace: str = "default"
    context: str | None = None
    timeout: Duration = Field(
        timedelta(minutes=10), description="How long the rollout may take, from the patch."
    )


class CommandStep(_Step):
    """Run a command (no shell) with only the named variables; its output, redacted, goes
    to the session's thread a few lines at a time."""

    kind: Literal["command"] = "command"
    argv: tuple[Template, ...] = Field(min_length=1)
    env: tuple[EnvVarName, ...] = ()
    timeout: Duration = timedelta(minutes=10)


class PauseStep(_Step):
    """Wait for ``duration``, or until a member of ``continue_by`` clicks *Continue* (then
    ``timeout`` bounds the wait, and ``on_timeout`` says what follows)."""

    kind: Literal["pause"] = "pause"
    duration: Duration | None = None
    continue_by: Roles = ()
    timeout: Duration = timedelta(hours=1)
    on_timeout: Literal["fail", "continue"] = "fail"

    @model_validator(mode="after")
    def _one_way(self) -> PauseStep:
        if (self.duration is None) == (not self.continue_by):
            raise PydanticCustomError(
                "pause", "a pause takes either 'duration' or 'continue_by' (the roles)"
            )
        return self


DeployStep = Annotated[KubernetesStep | CommandStep | PauseStep, Field(discriminator="kind")]


class DeployPlan(BaseModel):
    """The steps that deploy a version, and what happens when one fails: ``rollback``
    stops and runs the environment's rollback; ``ask`` pages and offers *Roll back* and
    *Retry step*. Written as a list, it is the steps, with ``on_failure: rollback``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_failure: OnFailure = "rollback"
    steps: tuple[DeployStep, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        return {"steps": data} if isinstance(data, list) else data


class ServiceSettings(BaseModel):
    """What differs for one service of an environment (``/deploy start prod api v1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deploy: DeployPlan | None = None


def deploy_plan(environment: Any, service: str) -> DeployPlan | None:
    """The service's own plan, else the environment's (``environment`` is a config
    ``Environment``)."""
    settings: ServiceSettings | None = environment.services.get(service) if service else None
    if settings is not None and settings.deploy is not None:
        return settings.deploy
    plan: DeployPlan | None = environment.deploy
    return plan


def planned_steps(plan: DeployPlan | None) -> tuple[StepProgress, ...]:
    """A new session's steps, all pending (none without a plan)."""
    return tuple(StepProgress(step_name(s), s.kind) for s in plan.steps) if plan else ()


def step_name(step: KubernetesStep | CommandStep | PauseStep) -> str:
    """One line naming a step (its ``name``, else what it does, untemplated)."""
    if step.name:
        return step.name
    if isinstance(step, KubernetesStep):
        return f"kubernetes: set image {', '.join(step.deployments)} -n {step.namespace}"
    if isinstance(step, CommandStep):
        return "command: " + " ".join(step.argv)
    if step.duration is not None:
        return f"pause {_short(step.duration)}"
    return f"pause until {', '.join(step.continue_by)} continue"


def uses_version(plan: DeployPlan) -> bool:
    texts: list[str] = []
    for step in plan.steps:
        if isinstance(step, KubernetesStep):
            texts += step.containers.values()
        elif isinstance(step, CommandStep):
            texts += step.argv
    return any("version" in placeholders(t) for t in texts)


@dataclass(frozen=True)
class Values:
    """What steps template, checked."""

    version: str
    service: str
    environment: str
    session: str = ""
    previous_version: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "version": self.version,
            "service": self.service,
            "environment": self.environment,
            "session": self.session,
            "previous_version": self.previous_version,
        }


def check_version(plan: DeployPlan | None, environment: str, service: str, version: str) -> None:
    """Refuse a version a plan cannot take (missing, or not an image tag).

    Raises:
        DomainError: what to type instead.
    """
    if plan is None or not uses_version(plan):
        return
    where = " ".join(p for p in (environment, service) if p)
    if not version:
        raise DomainError(
            f"Deploying {where} runs steps that need a version: "
            f"`/deploy start {environment} {service or '<service>'} <version>`."
        )
    if not VERSION.fullmatch(version):
        raise DomainError(
            f"Deploying {where} runs steps that template the version, so it must be an image "
            "tag: letters, digits, `_`, `.` and `-`, at most 128 characters."
        )


def _short(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    return (f"{minutes}m" if minutes else "") + (f"{seconds}s" if seconds or not minutes else "")
