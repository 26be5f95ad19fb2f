"""Runs a session's probes and turns their results into checklist changes.

Each result ticks or fails the items linked to its probe and is stored as a probe run, in
one transaction through the bus (which also writes the pages and Slack updates that follow);
after deployment a failed critical probe fails the session. A round runs as an outbox
effect (topic ``probes``), so any replica may run it and none is lost to a crash.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

from bot.app.sessions import DeployService
from bot.config.metric_specs import dashboard_link
from bot.config.probe_specs import MetricProbe, ProbeSpec
from bot.config.schema import Config
from bot.domain import SYSTEM, DeploySession, ItemStatus, SessionState
from bot.domain.checklist import Severity
from bot.domain.commands import (
    Fail,
    InterruptProbe,
    RecordProbeResult,
    StartMonitoring,
    StartProbe,
)
from bot.domain.errors import DomainError
from bot.integrations.probes import ProbeContext, ProbeResult, run_probes
from bot.integrations.probes.base import MAX_CONCURRENCY
from bot.integrations.probes.clients import PER_HOST, ProbeClients
from bot.ops.logs import session_scoped
from bot.storage.probe_rounds import (
    abandon,
    beat,
    begin_round,
    claim_dead,
    end_round,
    live_round,
    reopen,
)
from bot.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

DEPLOYED = (SessionState.DEPLOYING, SessionState.VERIFYING, SessionState.MONITORING)
INTERRUPTED = "probe interrupted: the bot stopped while it ran"


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


def dashboard_links(config: Config, session: DeploySession) -> dict[str, str]:
    """Item id to the dashboard its metric probe links to (``dashboard_url``), filled with the
    session's values; ``{{previous_version}}`` is not looked up here, so it links nowhere."""
    values = {
        "service": session.service,
        "version": session.version,
        "environment": session.environment,
    }
    links = {}
    for name, item_ids in probe_links(session).items():
        spec = config.probes.get(name)
        link = dashboard_link(spec, values) if isinstance(spec, MetricProbe) else None
        if link:
            links.update(dict.fromkeys(item_ids, link))
    return links


class SessionProbes:
    """Runs the probes of a session and records what they found, through the bus."""

    def __init__(
        self,
        *,
        config: Config,
        service: DeployService,
        context: Callable[[], ProbeContext] = ProbeContext,
        concurrency: int = MAX_CONCURRENCY,
        per_host: int = PER_HOST,
        lease: float = 15.0,
        owner: str | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.context = context
        self.concurrency = concurrency
        # One HTTP client (its connections kept alive between rounds), the TLS contexts and
        # the per-target slots, shared by every round this process runs.
        self.clients = ProbeClients(per_host=per_host)
        self.lease = timedelta(seconds=lease)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running: set[int] = set()
        self._running_lock = threading.Lock()
        self._handed_back = False

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
        begun: list[int] = []
        if starts:

            def begin(uow: UnitOfWork, now: DeploySession) -> None:
                at = self.service.clock()
                begun[:] = [begin_round(uow.db, session_id=session_id, owner=self.owner, at=at)]

            self.service.handle(session_id, starts, SYSTEM, also=begin)
        with self._heartbeat(begun):
            outcome = self._run(session, links, specs)
        if begun:
            end_round(self.service.session_factory, begun[0], self.service.clock())
        self._advance(session_id, outcome, why)
        log.info(
            "probes ran",
            extra={"session_id": session_id, "why": why, "failed": len(outcome.critical_failures)},
        )
        return outcome

    def _run(
        self, session: DeploySession, links: dict[str, list[str]], specs: dict[str, ProbeSpec]
    ) -> ProbeRound:
        assert session.id is not None
        session_id = session.id
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

        ctx = replace(self.context(), template=self.template(session), clients=self.clients)
        ran = run_probes(specs, ctx=ctx, concurrency=self.concurrency, on_result=record)
        return ProbeRound(session_id, [recorded.get(r.name, r) for r in ran])

    def template(self, session: DeploySession) -> dict[str, str]:
        """The session's values a metric probe's query may name (``{{version}}``)."""
        assert session.id is not None
        with UnitOfWork(self.service.session_factory) as uow:
            previous = uow.summaries.previous_version(
                session.environment, session.service, session.id
            )
        return {
            "service": session.service,
            "version": session.version,
            "previous_version": previous,
            "environment": session.environment,
        }

    @contextmanager
    def _heartbeat(self, rounds: list[int]) -> Iterator[None]:
        """Renew the rounds' heartbeat every third of a lease while they run. A round that
        raises keeps its items "running" and stops beating: it is recovered as interrupted."""
        with self._running_lock:
            self._running.update(rounds)
        stop = threading.Event()

        def beating() -> None:
            while not stop.wait(self.lease.total_seconds() / 3):
                with self._running_lock:
                    if self._handed_back:
                        return
                try:
                    beat(self.service.session_factory, rounds, self.service.clock())
                except Exception:  # the next beat tries again; the lease has slack
                    log.warning("could not renew a probe round's heartbeat", exc_info=True)

        beater = threading.Thread(target=beating, name="probe-heartbeat", daemon=True)
        if rounds:
            beater.start()
        try:
            yield
        finally:
            stop.set()
            if rounds:
                beater.join()
            with self._running_lock:
                self._running.difference_update(rounds)

    def hand_back(self) -> None:
        """This process stops: the rounds it still runs are given up now, and their items
        marked interrupted (by this process, or by another replica if it can't)."""
        with self._running_lock:
            self._handed_back = True
            rounds = sorted(self._running)
        if rounds:
            log.warning("handing back probe rounds still running", extra={"rounds": rounds})
            abandon(self.service.session_factory, rounds)
            self.recover_interrupted()

    def recover_interrupted(self) -> int:
        """Mark interrupted the items of rounds whose process stopped (no heartbeat for a
        lease), in sessions that no live process probes now; returns how many sessions.

        Each is audited (``probe_interrupted``), refreshes the session's Slack messages, says
        so in its thread and runs the probes again unless a round is already due.
        """
        factory, now = self.service.session_factory, self.service.clock()
        with factory() as db, db.begin():
            dead = claim_dead(db, now=now, stale=self.lease)
        recovered = 0
        for session_id in sorted({sid for _, sid in dead}):
            try:
                with factory() as db:
                    if live_round(db, session_id, now=now, stale=self.lease):
                        continue  # a live round runs the same probes again
                session = self.service.get(session_id)
                interrupts = [
                    InterruptProbe(item.id, INTERRUPTED)
                    for _, item in session.checklist.walk()
                    if session.progress(item.id).status is ItemStatus.RUNNING
                ]
                if interrupts:
                    self.service.handle(session_id, interrupts, SYSTEM)
                    recovered += 1
            except Exception:  # one session's trouble does not hold up the others
                log.exception(
                    "could not recover interrupted probes", extra={"session_id": session_id}
                )
                reopen(factory, [rid for rid, sid in dead if sid == session_id])
        return recovered

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
