"""Rolling a deploy back, exactly once, and saying at every step what was done.

A click only changes the session's state (``StartRollback``): the state machine and the
session's row lock make that happen once however many people click. The steps run as an
outbox effect on any replica, each claimed in ``schedule_slots`` before it runs, so a
restart never re-runs a finished step; a step that was under way when the process died is
reported as interrupted rather than repeated blindly. What each step did reaches the
incident thread through the effects of its audit events.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.app.incidents import describe_target
from bot.app.probe_rounds import SessionProbes
from bot.app.sessions import DeployService
from bot.config.schema import Config
from bot.domain import SYSTEM, DeploySession, Event, SessionState
from bot.domain.commands import RollbackFailed, RollbackSucceeded, StartRollback
from bot.domain.errors import DeployError, DomainError
from bot.integrations.rollback_targets import RollbackTarget, run_target
from bot.ops import metrics
from bot.ops.logs import session_scoped
from bot.ops.redact import StepEnvironment, step_environment
from bot.storage.outbox import Defer
from bot.storage.repositories import AuditEntry
from bot.storage.schedule_slots import claim_slot

log = logging.getLogger(__name__)


class Rollbacks:
    """Requests rollbacks and runs their steps (the outbox handler of topic ``rollback``)."""

    def __init__(
        self,
        *,
        config: Config,
        service: DeployService,
        probes: SessionProbes,
        run: Callable[[RollbackTarget], str] = run_target,
        session_factory: sessionmaker[Session] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        # Where a step's variables come from (``run``'s own default); their values are masked
        # in whatever the step reports, as well as every known shape of secret.
        self.environ = environ
        self.service = service
        # Where steps are claimed (``schedule_slots``); the service's database unless given.
        self.session_factory = session_factory or service.session_factory
        self.probes = probes
        self.run_step = run

    def request(
        self, session_id: int, user_id: str, *, request: str | None = None
    ) -> DeploySession:
        """A responder asked for a rollback; only the first of racing clicks gets one.

        The steps follow as an outbox effect of the ``rollback_started`` event.

        Raises:
            DomainError: not allowed (role, state), or a rollback is already under way.
        """
        try:
            outcome = self.service.act(session_id, StartRollback(), user_id, request=request)
        except DomainError:
            if self.service.get(session_id).state is SessionState.ROLLING_BACK:
                raise DomainError(
                    f"A rollback of deploy #{session_id} is already under way."
                ) from None
            raise
        return outcome.session

    def deliver(self, payload: dict[str, Any]) -> None:
        """The outbox handler: run the rollback of ``payload["session_id"]``."""
        self.execute(int(payload["session_id"]))

    @session_scoped
    def execute(self, session_id: int) -> None:
        """Run the steps not yet run, verify with the probes, and settle the session."""
        session = self.service.get(session_id)
        if session.state is not SessionState.ROLLING_BACK:
            return
        history = self.service.history(session_id)
        attempt = sum(1 for e in history if e.kind == "rollback_started")
        done = {
            e.data["step"]
            for e in history
            if e.kind == "rollback_step_done" and e.data.get("attempt") == attempt
        }
        targets = self.config.environment(session.environment).rollback
        job = f"rollback-{attempt}"
        for step, target in enumerate(targets, start=1):
            what = describe_target(target)
            if step in done:
                continue
            now = self.service.clock()
            if not claim_slot(self.session_factory, session_id, job, step, at=now):
                self._fail(
                    session,
                    f"step {step} ({what}) was interrupted by a restart; "
                    "check it by hand, then roll back again or resolve",
                )
                return
            self._note(session, "rollback_step_started", attempt, step, what)
            env = self._step_environment(target)
            try:
                result = env.redact(self.run_step(target))
            except DeployError as error:
                detail = env.redact(str(error))
                self._note(session, "rollback_step_failed", attempt, step, detail)
                self._fail(session, f"step {step} failed: {detail}")
                return
            except Exception as error:  # an unexpected failure is still a failed step
                # The traceback may quote the step's variables: masked by value, as its output.
                trace = env.redact(traceback.format_exc())
                log.error("rollback step crashed\n%s", trace, extra={"session_id": session_id})
                detail = env.redact(f"{type(error).__name__}: {error}")
                self._note(session, "rollback_step_failed", attempt, step, detail)
                self._fail(session, f"step {step} failed: {detail}")
                return
            self._note(session, "rollback_step_done", attempt, step, result)
        self._verify(session, attempt, history)

    def _step_environment(self, target: RollbackTarget) -> StepEnvironment:
        """The variables ``target`` runs with (a command's ``env``; none for the others)."""
        names = getattr(target, "env", ())
        return step_environment(names, os.environ if self.environ is None else self.environ)

    def _verify(self, session: DeploySession, attempt: int, history: list[AuditEntry]) -> None:
        """Probe rounds over the environment's verify window until they pass or it ends.

        A rollback can take a while to take effect, so a failing round is tried again
        ``every`` so often (the outbox row is deferred, so no thread waits) until ``for_``
        has passed since the first failing round.

        Raises:
            Defer: the probes still fail and the window is still open.
        """
        assert session.id is not None
        window = self.config.environment(session.environment).rollback_verify
        now = self.service.clock()
        began = next(
            (
                e.at
                for e in history
                if e.kind == "rollback_verifying" and e.data.get("attempt") == attempt
            ),
            None,
        )
        if any(item.probe for _, item in session.checklist.walk()):
            failed = self.probes.run(session.id, why="rollback verification").critical_failures
        else:
            failed = []
        if failed:
            if began is None:  # the first failing round opens the window
                began = now
                what = (
                    f"the probes still fail; trying again every {_short(window.every)} "
                    f"for up to {_short(window.for_)}"
                )
                self._note(session, "rollback_verifying", attempt, 0, what)
            if now + window.every <= began + window.for_:
                raise Defer(window.every.total_seconds())
            names = "; ".join(f"{r.name}: {r.summary}" for r in failed)
            self._fail(
                session,
                f"the probes still fail {_short(now - began)} after the rollback: {names}",
            )
            return
        self.service.act_as(session.id, RollbackSucceeded(), SYSTEM)
        metrics.rollback_settled(ok=True)

    def _fail(self, session: DeploySession, detail: str) -> None:
        assert session.id is not None
        self.service.act_as(session.id, RollbackFailed(detail[:500]), SYSTEM)
        metrics.rollback_settled(ok=False)

    def _note(self, session: DeploySession, kind: str, attempt: int, step: int, text: str) -> None:
        assert session.id is not None
        self.service.record(
            session.id,
            Event(
                kind,
                "deploybot",
                self.service.clock(),
                {"attempt": attempt, "step": step, "detail": text},
            ),
        )


def _short(delta: timedelta) -> str:
    """``3m``, ``1m30s``, ``10s``, ``1.5s``: a duration as the config writes it."""
    if delta < timedelta(seconds=10):  # a short window's tenths matter
        return f"{round(delta.total_seconds(), 1):g}s"
    seconds = int(delta.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    return (f"{minutes}m" if minutes else "") + (f"{seconds}s" if seconds or not minutes else "")
