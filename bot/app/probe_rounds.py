"""Runs a session's probes and turns their results into checklist changes.

Each result ticks or fails the items linked to its probe and is stored as a probe run, in
one transaction through the bus (which also writes the pages and Slack updates that follow);
after deployment a failed critical probe fails the session. A round runs as an outbox
effect (topic ``probes``), so any replica may run it and none is lost to a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from bot.app.sessions import DeployService
from bot.config.probe_specs import ProbeSpec
from bot.config.schema import Config
from bot.domain import SYSTEM, DeploySession, SessionState
from bot.domain.checklist import Severity
from bot.domain.commands import Fail, RecordProbeResult, StartMonitoring, StartProbe
from bot.domain.errors import DomainError
from bot.integrations.probes import ProbeContext, ProbeResult, run_probes
from bot.ops.logs import session_scoped
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

DEPLOYED = (SessionState.DEPLOYING, SessionState.VERIFYING, SessionState.MONITORING)


def probe_links(session: DeploySession) -> dict[str, list[str]]:
    """Probe name -> the ids of the items it ticks, in checklist order."""
    links: dict[str, list[str]] = {}
    for _, item in session.checklist.walk():
        if item.probe:
            links.setdefault(item.probe, []).append(item.id)
    return links


def effective_severities(
    session: DeploySession, specs: dict[str, ProbeSpec]
) -> dict[str, Severity]:
    """A probe's failure is as severe as its probe config says, unless the items it ticks
    say otherwise; if any of them is critical, it is critical."""
    found: dict[str, Severity] = {}
    for _, item in session.checklist.walk():
        if item.probe in specs:
            level = item.severity or specs[item.probe].severity
            if found.get(item.probe) is not Severity.CRITICAL:
                found[item.probe] = level
    return found


@dataclass(frozen=True)
class ProbeRound:
    session_id: int
    results: list[ProbeResult]

    @property
    def critical_failures(self) -> list[ProbeResult]:
        """What fails a deployed session: critical probes that ran and failed (one that
        could not run is a configuration problem; its item stays failed, blocking completion)."""
        return [
            r for r in self.results if not r.ok and r.runnable and r.severity is Severity.CRITICAL
        ]


class SessionProbes:
    """Runs the probes of a session and records what they found, through the bus."""

    def __init__(
        self,
        *,
        config: Config,
        service: DeployService,
        context: Callable[[], ProbeContext] = ProbeContext,
        concurrency: int = 32,
    ) -> None:
        self.config = config
        self.service = service
        self.context = context
        self.concurrency = concurrency

    @session_scoped
    def run(self, session_id: int, *, why: str = "requested") -> ProbeRound:
        """Run every probe the session's items link to; returns the results.

        Each result is one transaction: its stored runs, the items it ticks or fails, and
        the effects that follow (pages, incident notes, the Slack refresh).

        Raises:
            NotFound: unknown session.
            DomainError: the session is closed (its probes no longer run).
        """
        session = self.service.get(session_id)
        if session.state.is_closed:
            raise DomainError(
                f"Deploy #{session_id} is {session.state.label}: its probes no longer run."
            )
        links = probe_links(session)
        specs: dict[str, ProbeSpec] = {name: self.config.probes[name] for name in links}
        starts = [StartProbe(item_id) for item_ids in links.values() for item_id in item_ids]
        if starts:
            self.service.handle(session_id, starts, SYSTEM)
        severity = effective_severities(session, specs)
        recorded: dict[str, ProbeResult] = {}

        def record(result: ProbeResult) -> None:
            result = replace(result, severity=severity[result.name])
            recorded[result.name] = result

            def store(uow: UnitOfWork, now: DeploySession) -> None:
                for item_id in links[result.name]:
                    uow.probe_runs.record(
                        result,
                        environment=session.environment,
                        session_id=session_id,
                        item_id=item_id,
                    )

            commands = [
                RecordProbeResult(
                    item_id, result.ok, result.summary, result.severity, result.runnable
                )
                for item_id in links[result.name]
            ]
            self.service.handle(session_id, commands, SYSTEM, also=store)

        ran = run_probes(specs, ctx=self.context(), concurrency=self.concurrency, on_result=record)
        outcome = ProbeRound(session_id, [recorded.get(r.name, r) for r in ran])
        self._advance(session_id, outcome, why)
        log.info(
            "probes ran",
            extra={"session_id": session_id, "why": why, "failed": len(outcome.critical_failures)},
        )
        return outcome

    def _advance(self, session_id: int, outcome: ProbeRound, why: str) -> None:
        """After deployment, a critical failure fails the session; a clean verify moves on."""
        session = self.service.get(session_id)
        if session.state not in DEPLOYED:
            return
        # What still fails on the checklist: a failure of a skipped item does not count.
        failing = {item.probe for item, _ in session.failing_items()}
        failed = [r for r in outcome.critical_failures if r.name in failing]
        if failed:
            names = ", ".join(f"{r.name} ({r.summary})" for r in failed)
            self.service.act_as(
                session_id, Fail(f"critical probe failed during {why}: {names}"[:500]), SYSTEM
            )
        elif (
            session.state is SessionState.VERIFYING
            and self.config.environment(session.environment).monitoring
        ):
            self.service.act_as(session_id, StartMonitoring(), SYSTEM)


def verdict(outcome: ProbeRound) -> str:
    """One line (and the failures) saying how a round went, for the person who asked."""
    failed = [r for r in outcome.results if not r.ok]
    lines = [f"• *{r.name}* ({r.severity.value}): {r.summary}" for r in failed[:10]]
    passed = f"{len(outcome.results) - len(failed)}/{len(outcome.results)} probes passed"
    return f"Deploy #{outcome.session_id}: {passed}." + ("\n" + "\n".join(lines) if lines else "")
