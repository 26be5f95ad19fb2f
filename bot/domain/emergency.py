"""Break-glass: an emergency deploy that skips what the environment names, never the audit.

Pure. An environment's :class:`EmergencyPolicy` says who may declare an emergency, which
sign-offs and sections its deploy gates then skip (only those: a sign-off it does not name is
still required), whether the promotion order is skipped, and who signs the retrospective that
is owed afterwards. The change freeze is always skipped: that is what break-glass is for.
:func:`admit` decides, for a session about to open, between a freeze, an override and an
emergency (see the table in ``tests/test_emergency.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot.domain.errors import DomainError
from bot.domain.freeze import FreezeOverride, FreezeWindow, admit_start
from bot.domain.policy import Action, Actor, Parties, SessionPolicy, SignOffRule, authorize


@dataclass(frozen=True)
class EmergencyPolicy:
    """``emergency:`` of an environment, as the domain reads it."""

    roles: tuple[str, ...]
    retrospective: SignOffRule
    skip_signoffs: tuple[str, ...] = ()  # sign-off keys
    skip_sections: tuple[str, ...] = ()  # section ids
    skip_promotion: bool = False

    def relax(self, policy: SessionPolicy) -> SessionPolicy:
        """``policy`` without the sign-offs and sections an emergency skips."""
        gates = {
            name: gate.model_copy(
                update={
                    "after": tuple(a for a in gate.after if a not in self.skip_sections),
                    "signoffs": tuple(k for k in gate.signoffs if k not in self.skip_signoffs),
                }
            )
            for name, gate in (("deploy", policy.deploy_gate), ("complete", policy.complete_gate))
        }
        return replace(
            policy,
            signoffs=tuple(r for r in policy.signoffs if r.key not in self.skip_signoffs),
            deploy_gate=gates["deploy"],
            complete_gate=gates["complete"],
        )

    def skipped(self, policy: SessionPolicy, frozen: FreezeWindow | None) -> tuple[str, ...]:
        """What the emergency skips, in words, for the audit and the summary."""
        roles = {r.key: r.role for r in policy.signoffs}
        words = [f"sign-off {roles.get(k, k)}" for k in self.skip_signoffs]
        words += [f"section {s}" for s in self.skip_sections]
        if self.skip_promotion and policy.promotion is not None:
            words.append(f"promotion from {policy.promotion.environment}")
        if frozen is not None:
            words.append(f"change freeze: {frozen.describe()}")
        return tuple(words)


@dataclass(frozen=True)
class Emergency:
    """An emergency declared on a session, and its retrospective once given."""

    by: str
    at: datetime
    reason: str
    retrospective: SignOffRule
    skipped: tuple[str, ...] = ()
    skips_promotion: bool = False
    retrospective_by: str | None = None
    retrospective_at: datetime | None = None
    retrospective_note: str = ""

    @property
    def outstanding(self) -> bool:
        """The retrospective is still owed."""
        return self.retrospective_at is None

    def to_json(self) -> dict[str, Any]:
        rule = self.retrospective
        return {
            "by": self.by,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "skipped": list(self.skipped),
            "skips_promotion": self.skips_promotion,
            "retrospective": {"key": rule.key, "role": rule.role, "by": list(rule.by)},
            "retrospective_by": self.retrospective_by,
            "retrospective_at": self.retrospective_at.isoformat()
            if self.retrospective_at
            else None,
            "retrospective_note": self.retrospective_note,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Emergency | None:
        """``None`` (rows written before break-glass existed) means none."""
        if not data:
            return None
        rule = data["retrospective"]
        at = data.get("retrospective_at")
        return cls(
            by=data["by"],
            at=datetime.fromisoformat(data["at"]),
            reason=data["reason"],
            retrospective=SignOffRule(rule["key"], rule["role"], tuple(rule["by"])),
            skipped=tuple(data.get("skipped", ())),
            skips_promotion=data.get("skips_promotion", False),
            retrospective_by=data.get("retrospective_by"),
            retrospective_at=datetime.fromisoformat(at) if at else None,
            retrospective_note=data.get("retrospective_note", ""),
        )


@dataclass(frozen=True)
class Admission:
    """How a session opens: inside a freeze by an override, as an emergency, or plainly."""

    override: FreezeOverride | None = None
    emergency: Emergency | None = None


def admit(
    *,
    window: FreezeWindow | None,
    override_reason: str | None,
    emergency_reason: str | None,
    emergency: EmergencyPolicy | None,
    policy: SessionPolicy,
    actor: Actor,
    parties: Parties,
    at: datetime,
) -> Admission:
    """Whether a session may open now, and as what.

    ``override_reason`` and ``emergency_reason`` are what the person gave with
    ``--override`` and ``--emergency`` (``None``: not given).

    Raises:
        DomainError: a freeze is in force and neither was given; both were given; an
            emergency without a reason, or where none is configured.
        PermissionDenied: the person is not in the roles that may override or declare.
    """
    if emergency_reason is None:
        try:
            return Admission(override=admit_start(window, override_reason, actor, parties, at))
        except DomainError as refused:
            if window is None or override_reason is not None or emergency is None:
                raise
            how = f"`/deploy start {parties.environment} --emergency <reason>`"
            raise DomainError(f"{refused} {emergency_hint(emergency, how)}") from None
    if override_reason is not None:
        raise DomainError(
            "Give either `--override <reason>` (a freeze) or `--emergency <reason>` "
            "(break-glass), not both: an emergency skips the freeze anyway."
        )
    return Admission(
        emergency=declare(emergency, emergency_reason, window, policy, actor, parties, at)
    )


def declare(
    emergency: EmergencyPolicy | None,
    reason: str,
    window: FreezeWindow | None,
    policy: SessionPolicy,
    actor: Actor,
    parties: Parties,
    at: datetime,
) -> Emergency:
    """An emergency declared by ``actor``, if the environment has break-glass, the actor
    is in its roles, and they say why.

    Raises:
        DomainError: no break-glass here, or no reason.
        PermissionDenied: ``actor`` is not in the emergency roles.
    """
    if emergency is None:
        raise DomainError(
            f"{parties.environment} has no break-glass: nobody may deploy it as an emergency "
            "(an `emergency:` section in deploybot.yaml would allow it). Start a normal deploy."
        )
    authorize(Action.DECLARE_EMERGENCY, actor, replace(parties, emergency=emergency.roles))
    reason = reason.strip()
    if not reason:
        raise DomainError('Say why this is an emergency: `--emergency "reason"`.')
    return Emergency(
        by=actor.user_id,
        at=at,
        reason=reason,
        retrospective=emergency.retrospective,
        skipped=emergency.skipped(policy, window),
        skips_promotion=emergency.skip_promotion,
    )


def emergency_hint(emergency: EmergencyPolicy, how: str) -> str:
    roles = ", ".join(f"`{r}`" for r in emergency.roles)
    return f"In an emergency, members of {roles} may break glass: {how}."
