"""Running probes: timing, timeouts, redaction and bounds on concurrency.

A kind's module exposes ``check(spec, ctx) -> ProbeOutcome`` and may raise anything: the
runner turns every exception and every overrun into a failed result, so a probe never raises
into its caller and a hung target costs its timeout and nothing more.

Every check of a round runs at once, on a pool sized to the round, up to ``concurrency``
(default 256) and to what the process's open-file limit leaves room for; a round never
fails for lack of file descriptors, it runs in waves. The checks share one HTTP client and
a bound per target (:mod:`.clients`), so one host sees at most ``per_host`` of them at once.
"""

from __future__ import annotations

import contextvars
import importlib
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.config.probe_specs import ProbeSpec
from bot.domain.checklist import Severity
from bot.integrations.probes.clients import ProbeClients, target_of
from bot.ops import metrics
from bot.ops.redact import redact

MAX_CONCURRENCY = 256
# File descriptors a check may hold at once: one socket for the kinds that talk to their
# target themselves; a command's pipes, or an SDK's connections, for the others.
ONE_SOCKET = frozenset({"http", "tcp", "tls", "dns", "prometheus", "sql"})
FDS_PER_CHECK = 4
FDS_KEPT = 32  # file descriptors a round leaves free for the rest of the process
GRACE_SECONDS = 2.0  # beyond its own timeout, how long the runner waits for a stuck check
SUMMARY_LIMIT = 200
DETAIL_LIMIT = 4000


@dataclass(frozen=True)
class ProbeContext:
    """What a check may read: environment variables (by the names the config gives), the
    session's values for templated queries (``service``, ``version``, ``previous_version``,
    ``environment``), and how to wait between measurements (tests pass a clock's sleep)."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    secrets: list[str] = field(default_factory=list)  # values a check used; redacted later
    template: Mapping[str, str] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep
    clients: ProbeClients | None = None  # the runner gives a round one when it has none

    @property
    def shared(self) -> ProbeClients:
        """The HTTP clients and per-target slots the checks of this round share."""
        if self.clients is None:  # a check run outside the runner: clients of its own
            object.__setattr__(self, "clients", ProbeClients())
        assert self.clients is not None
        return self.clients

    def env(self, name: str) -> str:
        """The value of a variable the config names; a clear error when it is unset."""
        value = self.environ.get(name)
        if not value:
            raise ProbeConfigError(f"environment variable {name} is not set")
        self.secrets.append(value)
        return value


class ProbeConfigError(Exception):
    """The probe cannot run as configured (a missing variable, a bad selector)."""


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    summary: str
    detail: str = ""
    runnable: bool = True  # False: the probe could not run at all (its configuration)


@dataclass(frozen=True)
class ProbeResult:
    """One run of one probe; ``summary`` and ``detail`` are already redacted."""

    name: str
    kind: str
    ok: bool
    summary: str
    detail: str
    duration: float
    severity: Severity
    at: datetime
    runnable: bool = True  # False: a configuration problem, not news about the service

    @property
    def status(self) -> str:
        return "passed" if self.ok else "failed"


class Check(Protocol):
    def __call__(self, spec: Any, ctx: ProbeContext) -> ProbeOutcome: ...


def check_for(kind: str) -> Check:
    """The ``check`` function of a kind's module, imported on first use (boto3 and the
    kubernetes client are slow to import and only some environments need them)."""
    module = importlib.import_module(f"bot.integrations.probes.{kind}_check")
    check: Check = module.check
    return check


def run_probe(name: str, spec: ProbeSpec, *, ctx: ProbeContext | None = None) -> ProbeResult:
    """Run one probe in this thread; never raises."""
    ctx, owned = _with_clients(ctx)
    try:
        result = _run_probe(name, spec, ctx=ctx)
    finally:
        if owned:
            ctx.shared.close()
    metrics.probe_ran(result.kind, result.ok, result.duration)
    return result


def _with_clients(ctx: ProbeContext | None) -> tuple[ProbeContext, bool]:
    """``ctx`` with clients to share; True when they were made here (to close after)."""
    ctx = ctx or ProbeContext()
    if ctx.clients is not None:
        return ctx, False
    return replace(ctx, clients=ProbeClients()), True


def fd_room(kinds: Iterable[str] = ()) -> int:
    """How many checks of these kinds the open-file limit leaves room for now (a large
    number if unknown)."""
    each = 1 if set(kinds) <= ONE_SOCKET else FDS_PER_CHECK
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/self/fd"))
    except (ImportError, OSError):
        return MAX_CONCURRENCY
    if soft == resource.RLIM_INFINITY:
        return MAX_CONCURRENCY
    return max(1, (soft - used - FDS_KEPT) // each)


def _run_probe(name: str, spec: ProbeSpec, *, ctx: ProbeContext | None = None) -> ProbeResult:
    ctx = ctx or ProbeContext()
    started, at = time.monotonic(), datetime.now(UTC)
    try:
        outcome = check_for(spec.kind)(spec, ctx)
    except ProbeConfigError as error:
        outcome = ProbeOutcome(False, f"not runnable: {error}", runnable=False)
    except Exception as error:  # a check's failure is a result, not a crash
        outcome = ProbeOutcome(False, f"{type(error).__name__}: {error}", repr(error))
    return _result(name, spec, outcome, time.monotonic() - started, at, ctx)


def run_probes(
    probes: Mapping[str, ProbeSpec] | Iterable[tuple[str, ProbeSpec]],
    *,
    ctx: ProbeContext | None = None,
    concurrency: int = MAX_CONCURRENCY,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Run probes concurrently; results in input order.

    All at once, up to ``concurrency`` and to what the open-file limit leaves room for;
    the checks of one target wait for one of its slots (``ctx.clients``, made for this
    round when absent) before their own timeout starts. ``on_result`` is called, in this
    thread, as each finishes (progress displays, Slack updates).
    """
    items = list(probes.items() if isinstance(probes, Mapping) else probes)
    if not items:
        return []
    ctx, owned = _with_clients(ctx)
    workers = max(1, min(concurrency, len(items), fd_room(spec.kind for _, spec in items)))
    longest = max(spec.timeout.total_seconds() for _, spec in items)
    waves = -(-len(items) // workers) + _busiest(items, ctx.shared.per_host) - 1
    deadline = time.monotonic() + longest * waves + GRACE_SECONDS
    results: dict[int, ProbeResult] = {}
    began = dict.fromkeys(range(len(items)), time.monotonic())
    queued = deque(range(len(items)))
    finished: queue.SimpleQueue[tuple[int, ProbeResult]] = queue.SimpleQueue()
    lock = threading.Lock()

    def lane(context: contextvars.Context) -> None:
        """Run queued checks one after the other until none is left: ``workers`` lanes
        run at once. Each check runs in a copy of the caller's context (its log lines
        carry the session)."""
        while True:
            with lock:
                if not queued:
                    return
                n = queued.popleft()
            name, spec = items[n]
            began[n] = time.monotonic()
            finished.put((n, context.copy().run(_run_probe, name, spec, ctx=ctx)))

    try:
        for _ in range(workers):
            ctx.shared.threads.submit(lane, contextvars.copy_context())
        while len(results) < len(items):
            try:
                n, result = finished.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            results[n] = result
            metrics.probe_ran(results[n].kind, results[n].ok, results[n].duration)
            if on_result:
                on_result(results[n])
        with lock:
            queued.clear()  # past the deadline: nothing more starts
        for n, (name, spec) in enumerate(items):
            if n not in results:  # stuck past its own timeout: report it, don't wait for it
                outcome = ProbeOutcome(False, f"timed out after {spec.timeout.total_seconds():g}s")
                results[n] = _result(
                    name, spec, outcome, time.monotonic() - began[n], datetime.now(UTC), ctx
                )
                metrics.probe_ran(results[n].kind, results[n].ok, results[n].duration)
                if on_result:
                    on_result(results[n])
    finally:
        with lock:
            queued.clear()
        if owned:  # a stuck check still using them fails at once: it was reported already
            ctx.shared.close()
    return [results[n] for n in range(len(items))]


def _busiest(items: list[tuple[str, ProbeSpec]], per_host: int) -> int:
    """How many waves the target with the most checks needs (queued checks wait for it)."""
    counts = Counter(target_of(spec) for _, spec in items)
    counts.pop(None, None)
    return max((-(-n // per_host) for n in counts.values()), default=1)


def _result(
    name: str,
    spec: ProbeSpec,
    outcome: ProbeOutcome,
    duration: float,
    at: datetime,
    ctx: ProbeContext,
) -> ProbeResult:
    summary = redact(" ".join(outcome.summary.split()), secrets=ctx.secrets)[:SUMMARY_LIMIT]
    detail = redact(outcome.detail, secrets=ctx.secrets)[:DETAIL_LIMIT]
    return ProbeResult(
        name, spec.kind, outcome.ok, summary, detail, duration, spec.severity, at, outcome.runnable
    )
