"""Running a session's deploy steps, each exactly once, as rollback steps are run.

*Start deployment* only changes the session's state; its ``deployment_started`` event
queues a ``deploy`` outbox row (one at a time per session, by ordering key) that any
replica's worker delivers here. Each step is marked ``running`` and then claimed in
``schedule_slots`` before it is applied: a step found running whose claim is taken was
under way when a process died, and is reported as interrupted rather than run again. A
step that waits (a rollout, a pause) only reads while it waits, so its row is deferred
(:class:`~bot.storage.outbox.Defer`) and any replica goes on watching. When every step is
done the bot finishes the deployment, and verification follows as for "Deployed: verify".

A failed step fails the session and opens its incident (the page and the incident thread
are the effects of its events); ``on_failure: rollback`` starts the configured rollback in
the same transaction, through :mod:`bot.app.rollback`.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.app.sessions import DeployService
from bot.config.deploy_specs import (
    CommandStep,
    KubernetesStep,
    PauseStep,
    Values,
    deploy_plan,
    render,
)
from bot.config.schema import Config
from bot.domain import SYSTEM, DeploySession, Event, SessionState
from bot.domain.commands import Command, FinishDeployment, StartRollback
from bot.domain.errors import DeployError, DomainError
from bot.domain.step_progress import StepProgress, StepState
from bot.domain.steps import ContinueStep, StartStep, StepApplied, StepDone, StepFailed, current
from bot.integrations.deploy_steps import (
    KubeTarget,
    StepError,
    rollout_progress,
    run_command,
    set_images,
)
from bot.ops.logs import session_scoped
from bot.ops.redact import step_environment
from bot.storage.outbox import Defer
from bot.storage.schedule_slots import claim_slot
from bot.storage.summaries import SessionSummaries

log = logging.getLogger(__name__)

Step = KubernetesStep | CommandStep | PauseStep
INTERRUPTED = "interrupted by a restart while it ran; check it by hand"


@dataclass(frozen=True)
class Outcome:
    """What applying or watching a step came to: ``waits`` keeps it waiting."""

    detail: str
    waits: bool = False


def values_of(session: DeploySession, previous_version: str = "") -> Values:
    return Values(
        version=session.version,
        service=session.service,
        environment=session.environment,
        session=str(session.id or ""),
        previous_version=previous_version,
    )


def kube_target(step: KubernetesStep, values: Values) -> KubeTarget:
    images = {name: render(image, values.as_dict()) for name, image in step.containers.items()}
    return KubeTarget(step.deployments, images, step.namespace, step.context)


def change_cause(session: DeploySession) -> str:
    """The ``kubernetes.io/change-cause`` of a step's patch: the session, by name."""
    return f"deploybot: deploy #{session.id} {session.title} by {session.requester}"


class DeploySteps:
    """Runs deploy steps (the outbox handler of topic ``deploy``).

    Args:
        poll: seconds between looks at a waiting step (a rollout, a pause).
        environ: where steps' variables (and ``KUBECONFIG``) come from.
    """

    def __init__(
        self,
        *,
        config: Config,
        service: DeployService,
        session_factory: sessionmaker[Session] | None = None,
        environ: Mapping[str, str] | None = None,
        poll: float = 2.0,
        apply_kube: Callable[..., str] = set_images,
        watch_kube: Callable[..., tuple[bool, str]] = rollout_progress,
        command: Callable[..., str] = run_command,
    ) -> None:
        self.config = config
        self.service = service
        self.session_factory = session_factory or service.session_factory
        self.environ = environ
        self.poll = poll
        self.apply_kube, self.watch_kube, self.command = apply_kube, watch_kube, command

    def deliver(self, payload: dict[str, Any]) -> None:
        self.execute(int(payload["session_id"]))

    @session_scoped
    def execute(self, session_id: int) -> None:
        """Run the steps left, in order, until all are done, one fails, or one waits.

        Raises:
            Defer: a step waits; look again in ``poll`` seconds (or when the pause ends).
        """
        while True:
            session = self.service.get(session_id)
            number = current(session)
            if session.state is not SessionState.DEPLOYING:
                return
            if number is None:
                self.service.act_as(session_id, FinishDeployment(), SYSTEM)
                return
            plan = deploy_plan(self.config.environment(session.environment), session.service)
            if plan is None or len(plan.steps) != len(session.steps):
                self._failed(session, number, "the config's deploy steps changed since it opened")
                return
            if not self._advance(session, number, plan.steps[number - 1]):
                return

    def _advance(self, session: DeploySession, number: int, step: Step) -> bool:
        """Move step ``number`` on; False when the session stops here (failed)."""
        assert session.id is not None
        progress = session.steps[number - 1]
        if progress.state is StepState.PENDING:
            self.service.act_as(session.id, StartStep(number), SYSTEM)
            progress = self.service.get(session.id).steps[number - 1]
        try:
            if progress.state is StepState.RUNNING:
                now = self.service.clock()
                job = f"deploy-{number}"
                if not claim_slot(self.session_factory, session.id, job, progress.attempt, at=now):
                    raise StepError(INTERRUPTED)
                outcome = self._apply(session, number, step)
                done: Command = (
                    StepApplied(number, outcome.detail)
                    if outcome.waits
                    else StepDone(number, outcome.detail)
                )
                self.service.act_as(session.id, done, SYSTEM)
                return True
            outcome = self._watch(session, step, progress)
        except (StepError, DeployError) as error:
            self._failed(session, number, self._redact(step, str(error)))
            return False
        except Defer:
            raise
        except Exception as error:  # an unexpected failure is still a failed step
            log.error(
                "deploy step crashed\n%s",
                self._redact(step, traceback.format_exc()),
                extra={"session_id": session.id},
            )
            self._failed(session, number, self._redact(step, f"{type(error).__name__}: {error}"))
            return False
        if outcome.waits:
            raise Defer(self.poll)
        self.service.act_as(session.id, StepDone(number, outcome.detail), SYSTEM)
        return True

    def _apply(self, session: DeploySession, number: int, step: Step) -> Outcome:
        values = values_of(session, self._previous_version(session))
        if isinstance(step, KubernetesStep):
            target = kube_target(step, values)
            return Outcome(self.apply_kube(target, change_cause(session), environ=self._env), True)
        if isinstance(step, CommandStep):
            env = step_environment(step.env, self._env)
            argv = [render(arg, values.as_dict()) for arg in step.argv]

            def emit(lines: list[str]) -> None:
                self._say(session, number, lines)

            detail = self.command(argv, env, step.timeout.total_seconds(), emit)
            return Outcome(env.redact(detail))
        if step.duration is not None:
            return Outcome(f"pausing for {_short(step.duration)}", True)
        return Outcome(
            f"waiting up to {_short(step.timeout)} for {', '.join(step.continue_by)} "
            "to click Continue",
            True,
        )

    def _watch(self, session: DeploySession, step: Step, progress: StepProgress) -> Outcome:
        """A waiting step: still waiting, done, or failed (:class:`StepError`)."""
        now = self.service.clock()
        since = progress.since or now
        if isinstance(step, KubernetesStep):
            done, status = self.watch_kube(kube_target(step, values_of(session)), environ=self._env)
            if done:
                return Outcome(status)
            if now - since > step.timeout:
                raise StepError(f"the rollout did not finish in {_short(step.timeout)}: {status}")
            return Outcome(status, waits=True)
        if isinstance(step, PauseStep):
            return pause_outcome(step, progress, now)
        raise StepError(f"a {step.kind} step does not wait")  # pragma: no cover

    def _failed(self, session: DeploySession, number: int, reason: str) -> None:
        """Fail the step and the session; roll back at once if the plan says so."""
        assert session.id is not None
        env = self.config.environment(session.environment)
        plan = deploy_plan(env, session.service)
        commands: list[Command] = [StepFailed(number, reason[:500])]
        if plan is not None and plan.on_failure == "rollback" and env.rollback:
            commands.append(StartRollback())
        self.service.handle(session.id, commands, SYSTEM)

    def _say(self, session: DeploySession, number: int, lines: list[str]) -> None:
        """A few lines of a command's output in the session's thread (an audited event)."""
        assert session.id is not None
        data = {"step": number, "lines": lines}
        event = Event("deploy_step_output", "deploybot", self.service.clock(), data)
        self.service.record(session.id, event)

    def _redact(self, step: Step, text: str) -> str:
        names = step.env if isinstance(step, CommandStep) else ()
        return step_environment(names, self._env).redact(text)

    def _previous_version(self, session: DeploySession) -> str:
        assert session.id is not None
        with self.session_factory() as db:
            return SessionSummaries(db).previous_version(
                session.environment, session.service, session.id
            )

    @property
    def _env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ


def pause_outcome(step: PauseStep, progress: StepProgress, now: datetime) -> Outcome:
    """Where a pause stands at ``now``: it ends after its ``duration``, at a *Continue*,
    or at its ``timeout`` (then it fails, or goes on, as ``on_timeout`` says).

    Raises:
        StepError: nobody continued in time and ``on_timeout`` is ``fail``.
    """
    since = progress.since or now
    if step.duration is not None:
        if now >= since + step.duration:
            return Outcome(f"paused {_short(step.duration)}")
        return Outcome("pausing", waits=True)
    if progress.continued_by:
        return Outcome(f"<@{progress.continued_by}> continued")
    if now >= since + step.timeout:
        if step.on_timeout == "continue":
            return Outcome(f"nobody clicked Continue in {_short(step.timeout)}; going on")
        raise StepError(f"nobody clicked Continue in {_short(step.timeout)}")
    return Outcome("waiting for Continue", waits=True)


def _short(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    minutes, seconds = divmod(seconds, 60)
    return (f"{minutes}m" if minutes else "") + (f"{seconds}s" if seconds or not minutes else "")


def continue_pause(
    service: DeployService, session_id: int, step: int, user_id: str, *, request: str | None
) -> None:
    """A person clicked *Continue* on a pause; the pause's ``continue_by`` roles decide.

    Raises:
        DomainError: not a pause that waits, or not allowed.
    """
    session = service.get(session_id)
    plan = deploy_plan(service.config.environment(session.environment), session.service)
    spec = plan.steps[step - 1] if plan is not None and 0 < step <= len(plan.steps) else None
    roles = spec.continue_by if isinstance(spec, PauseStep) else ()
    if not roles:
        raise DomainError(f"Step {step} of deploy #{session_id} is no pause to continue.")
    service.act(session_id, ContinueStep(step, roles), user_id, request=request)
