"""Prometheus metrics: what deploybot counts, and the small hooks that count it.

The counters and histograms are process-wide (one bot per process in production);
:func:`registry_for` builds the registry a bot serves at ``/metrics``: those metrics, the
process collectors, and ``deploybot_sessions``, counted from the database at scrape time.

Metrics:
    ``deploybot_sessions{state}``: deploy sessions by state (a gauge, one query per scrape).
    ``deploybot_probe_runs_total{kind,result}``: probe runs; result ``passed`` or ``failed``.
    ``deploybot_probe_duration_seconds{kind}``: how long probes take (histogram).
    ``deploybot_pages_total{action,result}``: PagerDuty deliveries; result ``sent`` or
    ``failed`` (each failed attempt counts; the outbox may retry it).
    ``deploybot_rollbacks_total{result}``: rollbacks settled, ``succeeded`` or ``failed``.
    ``deploybot_slack_api_calls_total{method}``: Slack Web API requests, retries included.
    ``deploybot_slack_ratelimited_total{method}``: those answered HTTP 429.
    ``deploybot_ack_seconds``: from a request reaching Bolt to the listener's ``ack()``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from slack_bolt import BoltResponse
from slack_bolt.context.ack import Ack
from slack_bolt.request import BoltRequest
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.config.probe_specs import PROBE_KINDS

log = logging.getLogger(__name__)

# Probes run from milliseconds (TCP on loopback) to their timeout (seconds to minutes).
_PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Slack's deadline for an acknowledgement is 3 seconds: buckets are dense below it.
_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5)

PROBE_RUNS = Counter(
    "deploybot_probe_runs",
    "Probe runs, by probe kind and result (passed, failed).",
    ["kind", "result"],
    registry=None,
)
PROBE_DURATION = Histogram(
    "deploybot_probe_duration_seconds",
    "How long probe runs take, by probe kind.",
    ["kind"],
    buckets=_PROBE_BUCKETS,
    registry=None,
)
PAGES = Counter(
    "deploybot_pages",
    "PagerDuty event deliveries, by action (trigger, acknowledge, resolve) and result "
    "(sent, failed; a failed delivery may be retried).",
    ["action", "result"],
    registry=None,
)
ROLLBACKS = Counter(
    "deploybot_rollbacks",
    "Rollbacks settled, by result (succeeded, failed).",
    ["result"],
    registry=None,
)
SLACK_CALLS = Counter(
    "deploybot_slack_api_calls",
    "Slack Web API requests, by method (each retry counts).",
    ["method"],
    registry=None,
)
SLACK_RATELIMITED = Counter(
    "deploybot_slack_ratelimited",
    "Slack Web API requests answered HTTP 429 (rate limited), by method.",
    ["method"],
    registry=None,
)
ACK_SECONDS = Histogram(
    "deploybot_ack_seconds",
    "Time from a Slack request reaching Bolt to the listener's ack().",
    buckets=_ACK_BUCKETS,
    registry=None,
)

PROCESS_METRICS: tuple[Collector, ...] = (
    PROBE_RUNS,
    PROBE_DURATION,
    PAGES,
    ROLLBACKS,
    SLACK_CALLS,
    SLACK_RATELIMITED,
    ACK_SECONDS,
    # prometheus_client's own process, platform and GC collectors (also in its default
    # registry; a collector may sit in several registries).
    PROCESS_COLLECTOR,
    PLATFORM_COLLECTOR,
    GC_COLLECTOR,
)
"""Every process-wide collector a bot's registry serves."""

PAGE_ACTIONS = ("trigger", "acknowledge", "resolve", "change")

# Known label values start at zero, so that rates and alerts work before the first event.
for _kind in PROBE_KINDS:
    for _result in ("passed", "failed"):
        PROBE_RUNS.labels(kind=_kind, result=_result)
for _action in PAGE_ACTIONS:
    for _result in ("sent", "failed"):
        PAGES.labels(action=_action, result=_result)
for _result in ("succeeded", "failed"):
    ROLLBACKS.labels(result=_result)


def registry_for(session_factory: sessionmaker[Session] | None) -> CollectorRegistry:
    """The registry one bot serves at ``/metrics``.

    Args:
        session_factory: the bot's database, for ``deploybot_sessions``; None leaves it out.

    Returns:
        A new registry holding the process-wide metrics (shared, not copied) and, given a
        database, the sessions-by-state gauge.
    """
    registry = CollectorRegistry()
    for collector in PROCESS_METRICS:
        registry.register(collector)
    if session_factory is not None:
        registry.register(SessionsByState(session_factory))
    return registry


class SessionsByState(Collector):
    """``deploybot_sessions{state}``: one ``GROUP BY`` query per scrape.

    Every state is exported, zero when no session is in it, so series don't come and go.
    A database error leaves the gauge out of that scrape (and is logged) rather than failing
    the whole scrape.
    """

    NAME = "deploybot_sessions"
    HELP = "Deploy sessions, by state."

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def describe(self) -> Iterable[Metric]:
        """The family's name and type, without a query (the registry asks at registration)."""
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["state"])]

    def collect(self) -> Iterable[Metric]:
        """Count the sessions by state now."""
        from bot.domain import SessionState  # late: keeps this module free of import cycles
        from bot.storage.models import SessionRow

        counts = dict.fromkeys((state.value for state in SessionState), 0)
        try:
            with self.session_factory() as db:
                rows = db.execute(
                    select(SessionRow.state, func.count()).group_by(SessionRow.state)
                ).all()
        except SQLAlchemyError as error:
            log.warning("metrics: can't count sessions: %s", type(error).__name__)
            return []
        for state, count in rows:
            counts[str(state)] = int(count)
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["state"])
        for state, count in counts.items():
            family.add_metric([state], count)
        return [family]


def probe_ran(kind: str, ok: bool, seconds: float) -> None:
    """Count one probe result the caller gets."""
    PROBE_RUNS.labels(kind=kind, result="passed" if ok else "failed").inc()
    PROBE_DURATION.labels(kind=kind).observe(seconds)


def rollback_settled(ok: bool) -> None:
    """Count one rollback that ended, well or not."""
    ROLLBACKS.labels(result="succeeded" if ok else "failed").inc()


S = TypeVar("S")


def counts_pages(
    deliver: Callable[[S, dict[str, Any]], None],
) -> Callable[[S, dict[str, Any]], None]:
    """Decorate an outbox handler for pages: count each delivery as sent or failed.

    An exception (a refusal, a rate limit, a network error) counts as failed and is re-raised
    unchanged: retrying stays the outbox's job.
    """

    @functools.wraps(deliver)
    def counted(self: S, payload: dict[str, Any]) -> None:
        action = payload.get("action")
        label = action if action in PAGE_ACTIONS else "invalid"
        try:
            deliver(self, payload)
        except BaseException:
            PAGES.labels(action=label, result="failed").inc()
            raise
        PAGES.labels(action=label, result="sent").inc()

    return counted


class SlackCallCounter(RetryHandler):
    """Counts every Slack Web API request and every HTTP 429; never asks for a retry.

    slack_sdk consults a client's retry handlers, in order, after every HTTP attempt (a
    success, an error status, a dropped connection); put this one first so that it sees all
    of them before a real retry handler takes over.
    """

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = request.url.rsplit("/", 1)[-1].split("?", 1)[0] or "unknown"
        SLACK_CALLS.labels(method=method).inc()
        if response is not None and response.status_code == 429:
            SLACK_RATELIMITED.labels(method=method).inc()
        return False


class _TimedAck(Ack):
    """Bolt's ``ack`` that observes, on its first call, how long the request waited."""

    def __init__(self, received: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._received = received
        self._observed = False

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = super().__call__(*args, **kwargs)
        if not self._observed:
            self._observed = True
            ACK_SECONDS.observe(time.perf_counter() - self._received)
        return response


def time_acks(req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:
    """Bolt global middleware: time each request from here to its listener's ``ack()``.

    A synchronous Bolt app's ``next()`` only lets the chain go on; the listener runs later
    (on the listener pool) and acknowledges through ``context.ack``. So the start time
    travels inside the ``ack`` the listener is given. Register this middleware first.
    """
    req.context["ack"] = _TimedAck(time.perf_counter())
    return next()
