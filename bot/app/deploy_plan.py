"""What a deploy's steps would do, said without doing it (``deploybot deploy plan``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from bot.config.deploy_specs import (
    CommandStep,
    KubernetesStep,
    Values,
    check_version,
    deploy_plan,
    render,
    step_name,
)
from bot.config.probe_specs import format_duration as short
from bot.config.schema import Config
from bot.domain.errors import DomainError
from bot.integrations.deploy_steps import CHANGE_CAUSE, STRATEGIC_MERGE


@dataclass(frozen=True)
class PlannedStep:
    """One step: its name and what it would send or run, as lines."""

    number: int
    name: str
    does: tuple[str, ...]


def plan_steps(
    config: Config, environment: str, version: str, *, service: str = "", previous: str = ""
) -> tuple[str, list[PlannedStep]]:
    """What ``/deploy start ENV [SERVICE] VERSION`` would run; the failure policy first.

    Raises:
        NotFound: unknown environment.
        DomainError: no deploy steps there, or a version the steps cannot take.
    """
    env = config.environment(environment)
    plan = deploy_plan(env, service)
    if plan is None:
        where = " ".join(p for p in (environment, service) if p)
        raise DomainError(f"{where} has no deploy steps: people deploy, then verify.")
    check_version(plan, environment, service, version)
    values = Values(version, service, environment, "N", previous).as_dict()
    on_failure = (
        "on failure: roll back (" + f"{len(env.rollback)} rollback target(s))"
        if plan.on_failure == "rollback" and env.rollback
        else "on failure: page and ask (Roll back, Retry step)"
    )
    planned = []
    for number, step in enumerate(plan.steps, start=1):
        does: list[str] = []
        if isinstance(step, KubernetesStep):
            containers = [
                {"image": render(image, values), "name": name}
                for name, image in step.containers.items()
            ]
            cause = f"deploybot: deploy #N {environment} {service} {version}".replace("  ", " ")
            patch = {
                "metadata": {"annotations": {CHANGE_CAUSE: cause}},
                "spec": {"template": {"spec": {"containers": containers}}},
            }
            for deployment in step.deployments:
                does.append(
                    f"PATCH deployment/{deployment} -n {step.namespace} ({STRATEGIC_MERGE}, "
                    "as `kubectl set image`; containers not named are left as they are):"
                )
                does.append(json.dumps(patch, indent=2))
            does.append(f"then wait up to {short(step.timeout)} for the rollout")
        elif isinstance(step, CommandStep):
            argv = [render(arg, values) for arg in step.argv]
            does.append("run " + json.dumps(argv) + f" (timeout {short(step.timeout)})")
            if step.env:
                does.append("with the variables " + ", ".join(step.env))
        elif step.duration is not None:
            does.append(f"wait {short(step.duration)}")
        else:
            does.append(
                f"wait up to {short(step.timeout)} for {', '.join(step.continue_by)} to click "
                f"Continue; then {step.on_timeout}"
            )
        planned.append(PlannedStep(number, step_name(step), tuple(does)))
    return on_failure, planned
