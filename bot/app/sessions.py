"""The one place that loads a session, applies a command, saves it and records what happened.

Transport code (Slack listeners, the CLI) calls this; it never writes SQL itself, and the
domain never sees a database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from bot.config.schema import Config, Environment
from bot.domain import Actor, DeploySession, Event, Outcome, SessionPolicy, SignOffRule, apply
from bot.domain.checklist import Checklist, ChecklistItem, Section
from bot.domain.commands import Command
from bot.domain.errors import DomainError, PermissionDenied
from bot.ops.logs import session_scoped
from bot.storage.probe_runs import ProbeRun
from bot.storage.repositories import AuditEntry, EnvironmentLock
from bot.storage.uow import UnitOfWork, run_in_transaction

AUTOMATED = "Automated checks"


def session_checklist(config: Config, env_name: str) -> Checklist:
    """The environment's checklist plus a section for probes that no item links to.

    Every probe then shows on an item in Slack, so its result is visible where people look.
    """
    checklist = config.checklist(env_name)
    linked = {item.probe for _, item in checklist.walk() if item.probe}
    unlinked = [p for p in config.environment(env_name).probes if p not in linked]
    if not unlinked:
        return checklist
    items = tuple(
        ChecklistItem(text=config.probes[name].description or f"Probe {name}", probe=name)
        for name in unlinked
    )
    section = Section(title=AUTOMATED, items=items)
    return Checklist(title=checklist.title, sections=(*checklist.sections, section)).numbered()


def utcnow() -> datetime:
    return datetime.now(UTC)


class RoleResolver(Protocol):
    """Which config roles a Slack user belongs to (user groups make this I/O)."""

    def roles_of(self, user_id: str) -> frozenset[str]: ...


@dataclass(frozen=True)
class ConfigRoles:
    """Roles from the user IDs written in the config; user groups are not expanded."""

    config: Config

    def roles_of(self, user_id: str) -> frozenset[str]:
        return frozenset(role for role, members in self.config.roles.items() if user_id in members)


def policy_for(env: Environment) -> SessionPolicy:
    """Freeze an environment's rules into the policy a new session carries."""
    return SessionPolicy(
        signoffs=tuple(SignOffRule(s.key, s.role, tuple(s.by)) for s in env.signoffs),
        operators=tuple(env.effective_operators),
        oncall=tuple(env.oncall),
        separation_of_duties=env.separation_of_duties,
        deploy_gate=env.deploy_gate,
        complete_gate=env.complete_gate,
    )


class DeployService:
    """Opens, changes and reads deploy sessions, one transaction per change."""

    def __init__(
        self,
        *,
        config: Config,
        session_factory: sessionmaker[Session],
        roles: RoleResolver | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.roles = roles or ConfigRoles(config)
        self.clock = clock

    def actor(self, user_id: str) -> Actor:
        return Actor(user_id, self.roles.roles_of(user_id))

    def open(
        self, *, environment: str, user_id: str, service: str = "", version: str = ""
    ) -> DeploySession:
        """Open a deploy session and take the environment's slot for that service.

        Raises:
            NotFound: unknown environment.
            PermissionDenied: the user may not start deploys there.
            DomainError: the environment is locked, or a session is already open.
        """
        env = self.config.environment(environment)
        actor = self.actor(user_id)
        if not actor.has_any(tuple(env.starters)):
            self._refuse(None, environment, user_id, "start", "no permission")
            roles = ", ".join(f"`{r}`" for r in env.starters)
            raise PermissionDenied(
                f"You can't start a deploy of {environment}: that needs one of the roles {roles}."
            )
        now = self.clock()
        session = DeploySession(
            environment=environment,
            requester=user_id,
            checklist=session_checklist(self.config, environment),
            policy=policy_for(env),
            opened_at=now,
            service=service,
            version=version,
        )
        with UnitOfWork(self.session_factory) as uow:
            lock = uow.locks.get(environment)
            if lock is not None:
                raise DomainError(
                    describe_lock(lock) + f" Ask them, or `/deploy unlock {environment}`."
                )
            session.id = uow.sessions.add(session)
            details = {"service": service, "version": version}
            uow.audit.append(
                [Event("session_opened", user_id, now, details)],
                session_id=session.id,
                environment=environment,
            )
            uow.commit()
        return session

    def act(self, session_id: int, command: Command, user_id: str) -> Outcome:
        """Apply a person's command; retried on a concurrent change so no click is lost.

        Raises:
            NotFound: unknown session.
            DomainError: refused by state, gate or policy (and audited as a refusal).
        """
        return self._act(session_id, command, self.actor(user_id))

    def act_as(self, session_id: int, command: Command, actor: Actor) -> Outcome:
        """Apply a command from a given actor (the bot itself, for probes and schedules)."""
        return self._act(session_id, command, actor)

    @session_scoped
    def _act(self, session_id: int, command: Command, actor: Actor) -> Outcome:
        def attempt(uow: UnitOfWork) -> Outcome:
            session = uow.sessions.get(session_id)
            outcome = apply(session, command, actor, self.clock())
            if outcome.changed:
                uow.sessions.save(outcome.session)
                uow.audit.append(
                    outcome.events, session_id=session_id, environment=session.environment
                )
                uow.commit()
            return outcome

        try:
            return run_in_transaction(self.session_factory, attempt)
        except DomainError as refused:
            what = type(command).__name__
            self._refuse(session_id, None, actor.user_id, what, str(refused))
            raise

    def record(self, session_id: int, event: Event) -> None:
        """Audit a fact about a session that is not a state change (a rollback step)."""
        with UnitOfWork(self.session_factory) as uow:
            environment = uow.sessions.environment_of(session_id)
            uow.audit.append([event], session_id=session_id, environment=environment)
            uow.commit()

    def _refuse(
        self, session_id: int | None, environment: str | None, user_id: str, what: str, why: str
    ) -> None:
        """Refusals are audited too: who tried what, and why it was refused."""
        with UnitOfWork(self.session_factory) as uow:
            if environment is None and session_id is not None:
                environment = uow.sessions.environment_of(session_id)
            event = Event("refused", user_id, self.clock(), {"command": what, "reason": why})
            uow.audit.append([event], session_id=session_id, environment=environment)
            uow.commit()

    def get(self, session_id: int) -> DeploySession:
        with UnitOfWork(self.session_factory) as uow:
            return uow.sessions.get(session_id)

    def list_open(self, environment: str | None = None) -> list[DeploySession]:
        with UnitOfWork(self.session_factory) as uow:
            return uow.sessions.list_open(environment)

    def history(self, session_id: int) -> list[AuditEntry]:
        with UnitOfWork(self.session_factory) as uow:
            return uow.audit.for_session(session_id)

    def probe_runs(self, session_id: int) -> list[ProbeRun]:
        with UnitOfWork(self.session_factory) as uow:
            return uow.probe_runs.for_session(session_id)

    def lock(self, *, environment: str, user_id: str, reason: str) -> EnvironmentLock:
        """Hold an environment: no new deploys start until it is unlocked."""
        self._require_starter(environment, user_id, "lock")
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            lock = uow.locks.lock(environment=environment, reason=reason, by=user_id, at=now)
            uow.audit.append(
                [Event("environment_locked", user_id, now, {"reason": reason})],
                session_id=None,
                environment=environment,
            )
            uow.commit()
            return lock

    def unlock(self, *, environment: str, user_id: str) -> EnvironmentLock:
        self._require_starter(environment, user_id, "unlock")
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            lock = uow.locks.unlock(environment)
            uow.audit.append(
                [Event("environment_unlocked", user_id, now)],
                session_id=None,
                environment=environment,
            )
            uow.commit()
            return lock

    def _require_starter(self, environment: str, user_id: str, doing: str) -> None:
        env = self.config.environment(environment)
        allowed = tuple(env.starters) + tuple(env.effective_operators)
        if not self.actor(user_id).has_any(allowed):
            roles = ", ".join(f"`{r}`" for r in dict.fromkeys(allowed))
            raise PermissionDenied(f"You can't {doing} {environment}: that needs one of {roles}.")


def describe_lock(lock: EnvironmentLock) -> str:
    return (
        f"{lock.environment} is locked by <@{lock.locked_by}> since "
        f"{lock.locked_at:%Y-%m-%d %H:%M} UTC: {lock.reason or 'no reason given'}."
    )
