"""The analysis, ECS and Lambda deploy steps: applied once, then watched without sleeping.

:class:`~bot.app.deploy_steps.DeploySteps` hands these kinds here. Between two looks the
runner's outbox row is deferred (``Outcome.retry_in`` says for how long), so no thread
sleeps through an analysis's ``interval`` and any replica may take the next look.

- **analysis**: each look whose round is due runs the named probes once (a metric probe
  takes one measurement: the step's ``count`` and ``interval`` make the series) and records
  the round (``StepMeasured``, so the step's progress holds the series). A round that ran
  but was not recorded before a crash runs again: probes only read.
- **ecs**: the new revision and the service update are the claimed change; stability is
  looked at until it holds or the step's ``timeout`` passes.
- **lambda**: the code update is the claimed change; then, once AWS says it is done, a
  version is published and the alias moved weight by weight (each move a recorded
  ``shifted`` mark, so a look after a crash knows where it stands), with the ``analysis``
  between weights.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.app.sessions import DeployService
from bot.config.deploy_specs import (
    AnalysisStep,
    EcsStep,
    LambdaStep,
    Measurements,
    Values,
    render,
)
from bot.config.metric_specs import MetricProbe
from bot.config.probe_specs import format_duration as short
from bot.domain import SYSTEM, DeploySession
from bot.domain.step_progress import StepProgress
from bot.domain.steps import StepMeasured
from bot.integrations import aws_deploy
from bot.integrations.deploy_steps import StepError
from bot.integrations.probes.analysis import analysis_of
from bot.integrations.probes.base import ProbeContext, ProbeResult, run_probes

ROUND_DETAIL = 480  # characters of a round's results kept in the step's event


@dataclass(frozen=True)
class Outcome:
    """What applying or watching a step came to: ``waits`` keeps it waiting, looked at
    again in ``retry_in`` seconds (the runner's ``poll`` when None)."""

    detail: str
    waits: bool = False
    retry_in: float | None = None


def aws_client(kind: str, region: str | None) -> Any:
    """A boto3 client (credentials, region and endpoint from the standard variables)."""
    import boto3
    from botocore.config import Config

    timeouts = Config(connect_timeout=10, read_timeout=30, retries={"max_attempts": 2})
    return boto3.session.Session().client(kind, region_name=region, config=timeouts)


def series_verdict(spec: Measurements, phases: list[str]) -> str:
    """``failed``, ``inconclusive``, ``passed``, or ``running`` while rounds are due."""
    if phases.count("failed") > spec.failure_limit:
        return "failed"
    if phases.count("inconclusive") > spec.inconclusive_limit:
        return "inconclusive"
    return "passed" if len(phases) >= spec.count else "running"


def round_phase(results: list[ProbeResult]) -> str:
    """One round: failed if a probe failed, inconclusive if a metric probe had no data."""
    phases = set()
    for result in results:
        if result.ok:
            continue
        analysis = analysis_of(result.detail) if result.runnable else None
        phases.add("inconclusive" if analysis and analysis.verdict == "inconclusive" else "failed")
    return "failed" if "failed" in phases else "inconclusive" if phases else "passed"


def stage_phases(progress: StepProgress, stage: str) -> list[str]:
    """The rounds recorded for ``stage`` (a Lambda weight, or empty), oldest first."""
    marks = (mark.partition(":") for mark in progress.measurements)
    return [phase for at, _, phase in marks if at == stage and phase != "shifted"]


class StepKinds:
    """Applies and watches analysis, ECS and Lambda steps for the runner."""

    def __init__(
        self,
        service: DeployService,
        *,
        environ: Mapping[str, str] | None = None,
        aws: Callable[[str, str | None], Any] = aws_client,
    ) -> None:
        self.service = service
        self.environ = environ
        self._make_client = aws
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def aws(self, kind: str, region: str | None) -> Any:
        """A client per service and region, made once (making one reads botocore's models)."""
        with self._lock:
            key = (kind, region)
            if key not in self._clients:
                self._clients[key] = self._make_client(kind, region)
            return self._clients[key]

    # -- applying (claimed: once) ------------------------------------------------------------

    def apply(self, step: AnalysisStep | EcsStep | LambdaStep, values: Values) -> Outcome:
        if isinstance(step, AnalysisStep):
            every = f", every {short(step.interval)}" if step.count > 1 else ""
            return Outcome(f"{step.count} round(s) of {', '.join(step.probes)}{every}", True)
        if isinstance(step, EcsStep):
            images = {c: render(image, values.as_dict()) for c, image in step.containers.items()}
            ecs = self.aws("ecs", step.region)
            detail = aws_deploy.update_ecs(
                ecs, cluster=step.cluster, service=step.service, images=images
            )
            return Outcome(detail, True)
        lmb = self.aws("lambda", step.region)
        return Outcome(
            aws_deploy.update_lambda_code(lmb, function=step.function, code=code_of(step, values)),
            True,
        )

    # -- watching (only reads, or sets a state: may repeat) -----------------------------------

    def watch(
        self,
        session: DeploySession,
        number: int,
        step: AnalysisStep | EcsStep | LambdaStep,
        progress: StepProgress,
        values: Values,
    ) -> Outcome:
        """Where a waiting step stands; a failure is a :class:`StepError`."""
        if isinstance(step, AnalysisStep):
            return self.measure(session, number, step, progress, values, stage="")
        now = self.service.clock()
        if isinstance(step, EcsStep):
            ecs = self.aws("ecs", step.region)
            done, status = aws_deploy.ecs_progress(ecs, cluster=step.cluster, service=step.service)
            if done:
                return Outcome(status)
            if now - (progress.since or now) > step.timeout:
                raise StepError(f"not stable within {short(step.timeout)}: {status}")
            return Outcome(status, waits=True)
        return self._lambda(session, number, step, progress, values, now)

    def measure(
        self,
        session: DeploySession,
        number: int,
        spec: Measurements,
        progress: StepProgress,
        values: Values,
        *,
        stage: str,
    ) -> Outcome:
        """Take the analysis round that is due, if one is; the series' verdict so far."""
        assert session.id is not None
        now = self.service.clock()
        phases = stage_phases(progress, stage)
        verdict = series_verdict(spec, phases)
        if verdict == "running":
            wait = spec.interval if phases else (spec.initial_delay or timedelta(0))
            due = (progress.since or now) + wait
            if now < due:
                left = (due - now).total_seconds()
                return Outcome(f"round {len(phases) + 1} due in {left:g} s", True, left)
            phase, seen = self._round(spec, values)
            measured = StepMeasured(number, stage, phase, seen[:ROUND_DETAIL])
            self.service.act_as(session.id, measured, SYSTEM)
            phases.append(phase)
            verdict = series_verdict(spec, phases)
        counts = ", ".join(f"{phases.count(p)} {p}" for p in ("passed", "failed", "inconclusive"))
        if verdict in ("failed", "inconclusive"):
            raise StepError(f"analysis {verdict} ({counts} of {spec.count} rounds)")
        if verdict == "passed":
            return Outcome(f"analysis passed ({counts})")
        return Outcome(
            f"round {len(phases)} of {spec.count}: {phases[-1]}",
            True,
            spec.interval.total_seconds(),
        )

    def _round(self, spec: Measurements, values: Values) -> tuple[str, str]:
        probes = self.service.config.probes
        chosen = []
        for name in spec.probes:
            probe = probes[name]
            if isinstance(probe, MetricProbe):  # one measurement: the step makes the series
                probe = probe.model_copy(update={"count": 1, "initial_delay": None})
            chosen.append((name, probe))
        context = ProbeContext(environ=dict(self._env), template=values.as_dict())
        results = run_probes(chosen, ctx=context)
        seen = "; ".join(f"{r.name}: {r.summary}" for r in results)
        return round_phase(results), seen

    def _lambda(
        self,
        session: DeploySession,
        number: int,
        step: LambdaStep,
        progress: StepProgress,
        values: Values,
        now: datetime,
    ) -> Outcome:
        assert session.id is not None
        lmb = self.aws("lambda", step.region)
        target = {"function": step.function, "alias": step.alias}
        while True:
            shifted = [
                int(mark.partition(":")[0])
                for mark in progress.measurements
                if mark.endswith(":shifted")
            ]
            if shifted and shifted[-1] >= 100:
                return Outcome(progress.detail or "all traffic on the new version")
            if not shifted:
                done, status = aws_deploy.lambda_update_status(lmb, function=step.function)
                if not done:
                    if now - (progress.since or now) > step.timeout:
                        raise StepError(f"the code update took over {short(step.timeout)}")
                    return Outcome(status, waits=True)
                new = aws_deploy.publish_version(lmb, function=step.function)
                stable, _ = aws_deploy.alias_state(lmb, **target)
                percent = step.routing[0]
            else:
                if step.analysis is not None:
                    stage = str(shifted[-1])
                    outcome = self.measure(
                        session, number, step.analysis, progress, values, stage=stage
                    )
                    if outcome.waits:
                        return outcome
                stable, weights = aws_deploy.alias_state(lmb, **target)
                if len(weights) != 1:
                    raise StepError(
                        f"Lambda alias '{step.function}:{step.alias}' no longer splits its "
                        f"traffic as this step left it (version {stable}, weights {weights})"
                    )
                new = next(iter(weights))
                percent = step.routing[step.routing.index(shifted[-1]) + 1]
            line = aws_deploy.route_alias(lmb, **target, stable=stable, new=new, percent=percent)
            self.service.act_as(
                session.id, StepMeasured(number, str(percent), "shifted", line), SYSTEM
            )
            progress = self.service.get(session.id).steps[number - 1]
            if percent >= 100:
                return Outcome(line)

    @property
    def _env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ


def code_of(step: LambdaStep, values: Values) -> dict[str, str]:
    """UpdateFunctionCode's code arguments, templated."""
    filled = values.as_dict()
    if step.image_uri is not None:
        return {"ImageUri": render(step.image_uri, filled)}
    assert step.s3_bucket is not None and step.s3_key is not None
    return {"S3Bucket": render(step.s3_bucket, filled), "S3Key": render(step.s3_key, filled)}
