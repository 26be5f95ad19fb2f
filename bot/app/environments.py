"""An environment's rules and facts as the domain reads them: its policies, its freeze in
force, its lock.

Built from the configuration (and, for freezes, the clock the bus injects), so the domain
gets plain facts and stays pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.config.freezes import freeze_at
from bot.config.schema import Environment
from bot.domain import SessionPolicy, SignOffRule
from bot.domain.commands import ChangeVersion, Command, OverrideFreeze, StartDeployment
from bot.domain.freeze import FreezeWindow
from bot.domain.policy import EnvironmentPolicy
from bot.domain.session import DeploySession
from bot.rendering.times import slack_date
from bot.storage.history import completed_deploys
from bot.storage.repositories import EnvironmentLock
from bot.storage.uow import UnitOfWork


def policy_for(env: Environment) -> SessionPolicy:
    """Freeze an environment's rules into the policy a new session carries."""
    return SessionPolicy(
        signoffs=tuple(
            SignOffRule(s.key, s.role, tuple(s.by), s.count, s.valid_for) for s in env.signoffs
        ),
        operators=tuple(env.effective_operators),
        oncall=tuple(env.oncall),
        separation_of_duties=env.separation_of_duties,
        freeze_override=tuple(env.freeze_override),
        promotion=env.requires.rule if env.requires else None,
        deploy_gate=env.deploy_gate,
        complete_gate=env.complete_gate,
    )


def environment_policy(env_name: str, env: Environment) -> EnvironmentPolicy:
    """An environment's rules for what is asked of it: start, lock, unlock, report."""
    return EnvironmentPolicy.build(
        env_name,
        starters=env.starters,
        operators=env.effective_operators,
        oncall=env.oncall,
        approvers=[role for signoff in env.signoffs for role in signoff.by],
        report=env.reports,
        freeze_override=env.freeze_override,
        emergency=env.emergency.roles if env.emergency else (),
    )


def freeze_of(env: Environment, at: datetime) -> FreezeWindow | None:
    """The environment's change freeze in force at ``at``, if any."""
    return freeze_at(env.freezes, at)


def with_facts(
    uow: UnitOfWork,
    session: DeploySession,
    commands: Sequence[Command],
    frozen: FreezeWindow | None,
) -> list[Command]:
    """The commands with the facts their rules need (the domain does no I/O): whether the
    environment is locked (read in the same transaction), the freeze in force, and the
    completed deploys a new version's promotion may point to."""
    filled: list[Command] = []
    for command in commands:
        if isinstance(command, StartDeployment):
            lock = uow.locks.get(session.environment)
            command = StartDeployment(locked=describe_lock(lock) if lock else None, frozen=frozen)
        elif isinstance(command, OverrideFreeze):
            command = OverrideFreeze(command.reason, frozen=frozen)
        elif isinstance(command, ChangeVersion) and session.policy.promotion is not None:
            source = session.policy.promotion.environment
            done = completed_deploys(uow.db, source, session.service, command.version.strip())
            command = ChangeVersion(command.version, completed=done)
        filled.append(command)
    return filled


def describe_lock(lock: EnvironmentLock) -> str:
    return (
        f"{lock.environment} is locked by <@{lock.locked_by}> since "
        f"{slack_date(lock.locked_at)}: {lock.reason or 'no reason given'}."
    )
