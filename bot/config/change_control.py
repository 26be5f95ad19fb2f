"""Change-control settings of an environment: the promotion order it requires, and its
break-glass (who may deploy it as an emergency, what that skips, who signs the
retrospective afterwards)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

from bot.config.errors import ChecklistFile, Problem, YamlSource, unknown_names
from bot.config.probe_specs import Duration
from bot.domain.checklist import slugify
from bot.domain.emergency import EmergencyPolicy
from bot.domain.policy import SignOffRule
from bot.domain.promotion import PromotionRule


def _known_roles(names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
    message = unknown_names(names, (info.context or {}).get("roles"), "role", "roles")
    if message:
        raise PydanticCustomError("unknown_reference", message)
    return names


Roles = Annotated[tuple[str, ...], AfterValidator(_known_roles), Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Promotion(_Strict):
    """``requires: {environment: staging, within: 7d}``."""

    environment: str = Field(
        min_length=1,
        description="The environment where the same service and version must have completed.",
    )
    within: Duration = Field(description="How recently, e.g. `7d`.")

    @property
    def rule(self) -> PromotionRule:
        return PromotionRule(self.environment, self.within)


class Retrospective(_Strict):
    """Who signs the retrospective an emergency deploy owes."""

    role: str = Field("Retrospective", min_length=1, description="The name people read.")
    by: Roles = Field(description="Roles whose members may sign it (not the requester).")


class Emergency(_Strict):
    """``emergency:``: break-glass with ``/deploy start <env> --emergency "reason"``."""

    roles: Roles = Field(description="Roles that may declare an emergency deploy.")
    skip_signoffs: tuple[str, ...] = Field(
        (),
        description="Sign-offs (role names as written under `signoffs`) an emergency does "
        "not wait for; every other sign-off is still required.",
    )
    skip_sections: tuple[str, ...] = Field(
        (),
        description="Checklist sections (by id, e.g. `pre-deployment`) the deploy and "
        "complete gates do not wait for in an emergency.",
    )
    skip_promotion: bool = Field(False, description="Skip the promotion order (`requires`).")
    retrospective: Retrospective = Field(
        description="Who signs the retrospective an emergency deploy owes afterwards; the "
        "summary shows it as outstanding until it is given."
    )

    def policy(self, signoff_keys: tuple[str, ...]) -> EmergencyPolicy:
        """As the domain reads it; ``skip_signoffs`` written as role names become keys."""
        keys = tuple(slugify(name) for name in self.skip_signoffs)
        retro = self.retrospective
        return EmergencyPolicy(
            roles=self.roles,
            retrospective=SignOffRule(slugify(retro.role), retro.role, retro.by),
            skip_signoffs=tuple(k for k in keys if k in signoff_keys),
            skip_sections=self.skip_sections,
            skip_promotion=self.skip_promotion,
        )

    def unknown_signoffs(self, signoff_keys: tuple[str, ...]) -> list[str]:
        return [name for name in self.skip_signoffs if slugify(name) not in signoff_keys]


def skipped_section_problems(
    source: YamlSource, env_loc: tuple[str, str], raw: dict[Any, Any], checklist: ChecklistFile
) -> list[Problem]:
    """``emergency.skip_sections`` names sections of the environment's checklist (read from
    the raw data, so the problem shows even when the environment has other errors)."""
    emergency = raw.get("emergency")
    skipped = emergency.get("skip_sections") if isinstance(emergency, dict) else None
    if not isinstance(skipped, list):
        return []
    names = [str(name) for name in skipped]
    message = unknown_names(names, checklist.section_ids, "section", "sections")
    if not message:
        return []
    return [source.problem((*env_loc, "emergency", "skip_sections"), message)]
