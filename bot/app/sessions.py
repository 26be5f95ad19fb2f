"""The one place that loads a session, applies a command, saves it and records what happened.

Transport code (Slack listeners, the CLI) calls this; it never writes SQL itself, and the
domain never sees a database.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from bot.app.admission import opening
from bot.app.effects import Change, Effects, record_effects, redraw_checklist
from bot.app.environments import describe_lock, environment_policy, freeze_of, with_facts
from bot.app.home import environment_homes
from bot.app.incidents import Incidents
from bot.config.deploy_specs import check_version, deploy_plan, planned_steps
from bot.config.schema import Config
from bot.domain import Actor, DeploySession, Event, Outcome, apply
from bot.domain.checklist import Checklist, ChecklistItem, Section
from bot.domain.commands import Command
from bot.domain.errors import DomainError, PermissionDenied
from bot.domain.policy import Action
from bot.domain.summary import SessionPage
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
    return checklist.model_copy(update={"sections": (*checklist.sections, section)}).numbered()


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


class DeployService:
    """The bus: every change to a session goes through :meth:`handle`, in one transaction.

    A unit of work loads the session once (row-locked on PostgreSQL, so changes queue up
    instead of conflicting), applies the commands, saves it, appends the events to the audit
    log, marks the Slack request that asked for it as done, and writes the effects the
    events call for (:mod:`bot.app.effects`) as outbox rows: all of it or none.
    """

    def __init__(
        self,
        *,
        config: Config,
        session_factory: sessionmaker[Session],
        roles: RoleResolver | None = None,
        clock: Callable[[], datetime] = utcnow,
        effects: Effects | None = None,
    ) -> None:
        self.config = config
        self.session_factory = session_factory
        self.roles = roles or ConfigRoles(config)
        self.clock = clock
        self.effects = effects or Effects(config, Incidents(config))
        # Nudges this replica's outbox workers once effects are committed, so they are
        # carried out at once rather than at the next poll. Correctness never depends on it.
        self.wake: Callable[[], None] = lambda: None
        # Requests finished here lately: only spares ``done`` a query, never decides anything.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._finished_lock = threading.Lock()

    def actor(self, user_id: str) -> Actor:
        return Actor(user_id, self.roles.roles_of(user_id))

    def open(
        self,
        *,
        environment: str,
        user_id: str,
        service: str = "",
        version: str = "",
        request: str | None = None,
        override: str | None = None,
        emergency: str | None = None,
    ) -> DeploySession:
        """Open a deploy session and take the environment's slot for that service.

        Args:
            override: why to open it during a change freeze (``None``: don't).
            emergency: why to open it as an emergency (break-glass; ``None``: don't).

        Raises:
            NotFound: unknown environment.
            PermissionDenied: the user may not start deploys there, or override its freeze.
            DomainError: the environment is locked or frozen, the promotion order is not
                met, or a session is already open.
        """
        env = self.config.environment(environment)
        self.authorize(environment, Action.START_SESSION, user_id, request=request)
        plan = deploy_plan(env, service)
        check_version(plan, environment, service, version)
        now = self.clock()
        try:
            how = opening(
                self.session_factory,
                environment,
                env,
                self.actor(user_id),
                service=service,
                version=version,
                override=override,
                emergency=emergency,
                at=now,
            )
        except DomainError as refused:
            self._refuse(None, environment, user_id, "start", str(refused), request)
            raise
        session = DeploySession(
            environment=environment,
            requester=user_id,
            checklist=session_checklist(self.config, environment),
            policy=how.policy,
            opened_at=now,
            service=service,
            version=version,
            freeze_override=how.override,
            promoted_from=how.promoted_from,
            emergency=how.emergency,
            steps=planned_steps(plan),
        )
        with UnitOfWork(self.session_factory) as uow:
            if not self._finish(uow, request, now):
                raise DomainError("This request was already handled.")
            lock = uow.locks.get(environment)
            if lock is not None:
                raise DomainError(
                    describe_lock(lock) + f" Ask them, or `/deploy unlock {environment}`."
                )
            session.id = uow.sessions.add(session)
            details = {"service": service, "version": version}
            events = [Event("session_opened", user_id, now, details)]
            events += how.events(environment, now)
            self._save(uow, None, session, events)
            uow.commit()
        return session

    @session_scoped
    def handle(
        self,
        session_id: int,
        commands: Sequence[Command],
        actor: Actor,
        *,
        request: str | None = None,
        reply_to: str | None = None,
        also: Callable[[UnitOfWork, DeploySession], None] | None = None,
    ) -> Outcome:
        """Apply ``commands`` by ``actor`` to a session, all or none, in one transaction.

        Args:
            request: the Slack request asking for it; marked done in the same transaction,
                so that the same request reaching another replica changes nothing.
            reply_to: a response URL that effects answering the person may use.
            also: more writes for the same transaction (a probe round's stored results).

        Raises:
            NotFound: unknown session.
            DomainError: refused by state, gate or policy (and audited as a refusal).
        """

        def attempt(uow: UnitOfWork) -> Outcome:
            now = self.clock()
            if not self._finish(uow, request, now):
                return Outcome(uow.sessions.get(session_id), ())  # applied before
            before = uow.sessions.get(session_id, for_update=True)
            session, events = before, list[Event]()
            env = self.config.environment(before.environment)
            for command in with_facts(uow, before, commands, freeze_of(env, now)):
                outcome = apply(session, command, actor, now)
                session, events = outcome.session, [*events, *outcome.events]
            if also is not None:
                also(uow, session)
            self._save(uow, before, session, events, reply_to=reply_to)
            uow.commit()
            return Outcome(session, tuple(events))

        try:
            return run_in_transaction(self.session_factory, attempt)
        except DomainError as refused:
            what = ", ".join(dict.fromkeys(type(c).__name__ for c in commands))
            self._refuse(session_id, None, actor.user_id, what, str(refused), request)
            raise

    def act(
        self, session_id: int, command: Command, user_id: str, *, request: str | None = None
    ) -> Outcome:
        """Apply one person's command (see :meth:`handle`)."""
        return self.handle(session_id, [command], self.actor(user_id), request=request)

    def act_as(self, session_id: int, command: Command, actor: Actor) -> Outcome:
        """Apply a command from a given actor (the bot itself, for probes and schedules)."""
        return self.handle(session_id, [command], actor)

    def request_report(
        self,
        session_id: int,
        user_id: str,
        *,
        request: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Post the session's report in its thread (an effect), if the environment lets
        ``user_id`` read reports; the audit log records who asked.

        Raises:
            NotFound: unknown session.
            PermissionDenied: not allowed (and audited as a refusal).
        """
        session = self.get(session_id)
        self.authorize(
            session.environment,
            Action.REPORT,
            user_id,
            requester=session.requester,
            session_id=session_id,
            request=request,
        )
        event = Event("report_requested", user_id, self.clock())
        self.record(session_id, event, request=request, reply_to=reply_to)

    def record(
        self,
        session_id: int,
        event: Event,
        *,
        request: str | None = None,
        reply_to: str | None = None,
    ) -> None:
        """Audit a fact about a session that is not a state change (a rollback step, a
        report asked for), with the effects it calls for; ``request`` and ``reply_to`` as in
        :meth:`handle`."""
        with UnitOfWork(self.session_factory) as uow:
            if not self._finish(uow, request, event.at):
                return  # the same Slack request, handled before (here or by another replica)
            session = uow.sessions.get(session_id)
            self._save(uow, session, session, [event], reply_to=reply_to)
            uow.commit()

    def _save(
        self,
        uow: UnitOfWork,
        before: DeploySession | None,
        after: DeploySession,
        events: list[Event],
        *,
        reply_to: str | None = None,
    ) -> None:
        if not events:
            return
        assert after.id is not None
        if before is not None and before is not after:
            uow.sessions.save(after)
        uow.audit.append(events, session_id=after.id, environment=after.environment)
        revision = uow.sessions.revision(after.id)
        change = Change(after, tuple(events), revision, reply_to)
        record_effects(self.effects, uow, change)
        uow.after_commit(self.wake)

    def _refuse(
        self,
        session_id: int | None,
        environment: str | None,
        user_id: str,
        what: str,
        why: str,
        request: str | None = None,
    ) -> None:
        """Refusals are audited too: who tried what, and why it was refused."""
        with UnitOfWork(self.session_factory) as uow:
            now = self.clock()
            self._finish(uow, request, now)
            if environment is None and session_id is not None:
                environment = uow.sessions.environment_of(session_id)
            event = Event("refused", user_id, now, {"command": what, "reason": why})
            uow.audit.append([event], session_id=session_id, environment=environment)
            if session_id is not None and environment is not None:
                redraw_checklist(uow, session_id, at=now, summary="StartDeployment" in what)
                uow.after_commit(self.wake)
            uow.commit()

    def _finish(self, uow: UnitOfWork, request: str | None, now: datetime) -> bool:
        """Mark the Slack request done in ``uow``; False if it was done before (anywhere)."""
        if request is None:
            return True
        with self._finished_lock:
            self._finished[request] = None
            if len(self._finished) > 10_000:
                self._finished.popitem(last=False)
        return uow.inbox.finish(request, at=now)

    def done(self, request: str | None) -> None:
        """Mark a Slack request done that changed nothing (a status, a refusal in parsing).

        Requests this process already finished in a change are skipped without a query: a
        tick costs one write transaction, not two.
        """
        if request is None or request in self._finished:
            return
        with UnitOfWork(self.session_factory) as uow:
            self._finish(uow, request, self.clock())
            uow.commit()

    def get(self, session_id: int) -> DeploySession:
        with UnitOfWork(self.session_factory) as uow:
            return uow.sessions.get(session_id)

    def list_open(self, environment: str | None = None) -> list[DeploySession]:
        """Every open session, whole (checklists included): for workers, not for lists."""
        with UnitOfWork(self.session_factory) as uow:
            return uow.sessions.list_open(environment)

    def list_recent(self, limit: int, *, open_only: bool = False) -> list[DeploySession]:
        with UnitOfWork(self.session_factory) as uow:
            return uow.sessions.list_recent(limit, open_only=open_only)

    def open_page(
        self, number: int = 1, *, per_page: int, environment: str | None = None
    ) -> SessionPage:
        """A page of open sessions' summaries, oldest first: no checklist is read."""
        with UnitOfWork(self.session_factory) as uow:
            return uow.summaries.open_page(number, per_page=per_page, environment=environment)

    def history(self, session_id: int) -> list[AuditEntry]:
        with UnitOfWork(self.session_factory) as uow:
            return uow.audit.for_session(session_id)

    def environment_history(self, environment: str) -> list[AuditEntry]:
        """Locks and unlocks of an environment, in order."""
        with UnitOfWork(self.session_factory) as uow:
            return uow.audit.for_environment(environment)

    def probe_runs(self, session_id: int) -> list[ProbeRun]:
        with UnitOfWork(self.session_factory) as uow:
            return uow.probe_runs.for_session(session_id)

    def lock(
        self, *, environment: str, user_id: str, reason: str, request: str | None = None
    ) -> EnvironmentLock:
        """Hold an environment: no new deploys start until it is unlocked."""
        self.authorize(environment, Action.LOCK, user_id, request=request)
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            if not self._finish(uow, request, now):
                raise DomainError("This request was already handled.")
            lock = uow.locks.lock(environment=environment, reason=reason, by=user_id, at=now)
            uow.audit.append(
                [Event("environment_locked", user_id, now, {"reason": reason})],
                session_id=None,
                environment=environment,
            )
            environment_homes(uow, self.config, environment, now)
            uow.after_commit(self.wake)
            uow.commit()
            return lock

    def unlock(
        self, *, environment: str, user_id: str, request: str | None = None
    ) -> EnvironmentLock:
        self.authorize(environment, Action.UNLOCK, user_id, request=request)
        now = self.clock()
        with UnitOfWork(self.session_factory) as uow:
            if not self._finish(uow, request, now):
                raise DomainError("This request was already handled.")
            lock = uow.locks.unlock(environment)
            uow.audit.append(
                [Event("environment_unlocked", user_id, now)],
                session_id=None,
                environment=environment,
            )
            environment_homes(uow, self.config, environment, now)
            uow.after_commit(self.wake)
            uow.commit()
            return lock

    def authorize(
        self,
        environment: str,
        action: Action,
        user_id: str,
        *,
        requester: str | None = None,
        session_id: int | None = None,
        request: str | None = None,
    ) -> None:
        """Check an environment-level action (or a session's report) against the domain's
        policy table; a refusal is audited on ``session_id`` when one is in question.

        Raises:
            NotFound: unknown environment.
            PermissionDenied: not allowed (and audited as a refusal).
        """
        policy = environment_policy(environment, self.config.environment(environment))
        try:
            policy.authorize(action, self.actor(user_id), requester=requester)
        except PermissionDenied as refused:
            self._refuse(session_id, environment, user_id, action.value, str(refused), request)
            raise
