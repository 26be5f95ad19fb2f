"""What a session opens with: its policy, and the freeze override, emergency and promotion
that let it open. The domain decides (:func:`bot.domain.emergency.admit`,
:func:`bot.domain.promotion.check_promotion`); this module gathers the facts it needs from
the configuration, the clock and storage, and names the events that record the decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.app.environments import environment_policy, freeze_of, policy_for
from bot.config.schema import Environment
from bot.domain import Actor, Event, SessionPolicy
from bot.domain.emergency import Emergency, EmergencyPolicy, admit
from bot.domain.freeze import FreezeOverride
from bot.domain.promotion import CompletedDeploy, check_promotion
from bot.domain.queue import check_turn
from bot.domain.transitions import freeze_overridden
from bot.storage.history import completed_deploys
from bot.storage.uow import UnitOfWork


@dataclass(frozen=True)
class Opening:
    policy: SessionPolicy
    override: FreezeOverride | None = None
    emergency: Emergency | None = None
    promoted_from: CompletedDeploy | None = None

    def events(self, environment: str, at: datetime) -> list[Event]:
        """The audited facts of the decision, after ``session_opened``."""
        events = []
        if self.override is not None:
            events.append(freeze_overridden(self.override, environment))
        if self.emergency is not None:
            done = self.emergency
            data = {"reason": done.reason, "skipped": list(done.skipped)}
            events.append(Event("emergency_declared", done.by, done.at, data))
        if self.promoted_from is not None:
            data = self.promoted_from.to_json()
            events.append(Event("promotion_checked", "deploybot", at, data))
        return events


def emergency_policy(env: Environment) -> EmergencyPolicy | None:
    return env.emergency.policy(env.signoff_keys) if env.emergency else None


def opening(
    session_factory: sessionmaker[Session],
    env_name: str,
    env: Environment,
    actor: Actor,
    *,
    service: str,
    version: str,
    override: str | None,
    emergency: str | None,
    at: datetime,
) -> Opening:
    """How a session of ``env_name`` may open at ``at``.

    Raises:
        DomainError: a freeze, the promotion order, break-glass or another person's turn in
            the queue refuses it (saying what to do).
        PermissionDenied: the override or the emergency was asked by someone not allowed.
    """
    policy = policy_for(env)
    glass = emergency_policy(env)
    admitted = admit(
        window=freeze_of(env, at),
        override_reason=override,
        emergency_reason=emergency,
        emergency=glass,
        policy=policy,
        actor=actor,
        parties=environment_policy(env_name, env).parties(requester=actor.user_id),
        at=at,
    )
    if admitted.emergency is not None and glass is not None:
        policy = glass.relax(policy)
    else:  # the one whose turn it is in the queue goes first; break-glass does not wait
        with UnitOfWork(session_factory) as uow:
            check_turn(uow.queue.lane(env_name, service), actor.user_id, at)
    promoted = None
    rule = policy.promotion
    if rule is not None and not (admitted.emergency and admitted.emergency.skips_promotion):
        with UnitOfWork(session_factory) as uow:
            completed = completed_deploys(uow.db, rule.environment, service, version)
        promoted = check_promotion(
            rule,
            environment=env_name,
            service=service,
            version=version,
            completed=completed,
            at=at,
        )
    return Opening(policy, admitted.override, admitted.emergency, promoted)
