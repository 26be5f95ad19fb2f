"""Composes the running bot and serves it: HTTP on a production WSGI server, or Socket Mode.

One process may play each role of :class:`Role`: the web tier (verify, record, acknowledge),
the workers (the inbox's listeners, the outbox, the scheduler), or both (the default).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app.deploy_steps import DeploySteps
from bot.app.effects import Effects
from bot.app.incidents import Incidents
from bot.app.probe_rounds import SessionProbes, verdict
from bot.app.rollback import Rollbacks
from bot.domain.errors import DeployError, DomainError
from bot.integrations.pagerduty import PagerDuty
from bot.ops import metrics
from bot.ops.settings import Settings
from bot.runtime import Runtime, build_runtime
from bot.serving import HttpServing, make_wsgi, waitress_server
from bot.slack.app import build_app, check_credentials, make_client
from bot.slack.delivery import SlackDelivery, reply
from bot.slack.home import HomePublisher
from bot.slack.inbox import SlackInbox
from bot.slack.inbox_workers import InboxWorkers
from bot.slack.links import SlackLinks
from bot.slack.paging import ThreadLinkedPages
from bot.slack.publisher import SessionPublisher
from bot.slack.reports import ReportPoster
from bot.slack.roles import SlackRoles
from bot.storage.db import schema_problem
from bot.workers.jobs import JobContext
from bot.workers.leader import leader_lock_for
from bot.workers.outbox import OutboxWorker
from bot.workers.periodic import Periodic
from bot.workers.scheduler import ScheduleRunner
from commands import Deps, register

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)

__all__ = ["Bot", "HttpServing", "Role", "create_bot", "make_wsgi", "serve_http"]


class Role(StrEnum):
    """What one process does (``deploybot serve --role``, ``deploybot worker``)."""

    ALL = "all"  # web tier and workers in one process: a single command runs everything
    WEB = "web"  # verify, record, acknowledge; the listeners run in `deploybot worker`s
    WORKER = "worker"  # the inbox's listeners, the outbox and the scheduler; health only

    @property
    def web(self) -> bool:
        return self is not Role.WORKER

    @property
    def works(self) -> bool:
        return self is not Role.WEB


@dataclass
class Bot:
    runtime: Runtime
    client: WebClient
    app: App  # takes Slack's requests (built in every role; served by the web tier only)
    publisher: SessionPublisher
    probes: SessionProbes
    rollbacks: Rollbacks
    scheduler: ScheduleRunner
    workers: tuple[OutboxWorker, ...]
    inbox: InboxWorkers
    recovery: Periodic  # marks interrupted the probe rounds of processes that stopped
    signing_secret: str = ""
    role: Role = Role.ALL

    def wsgi(self) -> WSGIApplication:
        return make_wsgi(
            self.app if self.role.web else None,
            signing_secret=self.signing_secret,
            ready=lambda: readiness(self.runtime),
            registry=metrics.registry_for(self.runtime.session_factory),
        )

    def start(self, *, scheduler: bool = True) -> None:
        """Start the background parts of a process that works (a web-only one has none):
        the inbox's workers, the outbox workers and (when it leads) the scheduler."""
        if not self.role.works:
            return
        for worker in self.workers:
            worker.start()
        self.inbox.start()
        self.recovery.start()
        if scheduler:
            self.scheduler.start()

    def close(self) -> None:
        self.scheduler.stop()
        self.recovery.stop()
        self.inbox.stop(timeout=5)
        for worker in self.workers:
            worker.stop()
        self.runtime.engine.dispose()

    def drain(self, http: HttpServing | None, *, timeout: float) -> None:
        """Stop on SIGTERM within ``timeout`` seconds, losing and holding up nothing.

        In order: stop accepting (requests being answered get their answer); give up the
        scheduler's leader lock (another replica leads at once); let acknowledged requests'
        listeners finish; deliver the Slack effects and pages that come due, and finish the
        long effect in hand; then hand back whatever is still in hand (outbox rows due now,
        probe rounds interrupted, unfinished Slack requests released), so another replica
        takes it over at once instead of a lease later.
        """
        deadline = time.monotonic() + timeout

        def left(share: float = 1.0) -> float:
            return max(0.0, (deadline - time.monotonic()) * share)

        if http is not None:
            http.close(timeout=left(0.25))
        self.scheduler.stop()
        self.recovery.stop()
        # Requests being worked on finish (inline ones on Bolt's pool, the others on the
        # inbox's); those still queued are released below.
        _together(
            [
                partial(self.inbox.stop, left(0.5)),
                self.app.listener_runner.listener_executor.shutdown,
            ],
            left(0.5),
        )
        # The last fifth delivers what handing back writes (the interrupted probes' notes).
        # A web-only process delivers nothing: its workers never ran.
        workers = self.workers if self.role.works else ()
        handing_back = deadline - timeout / 5
        _together([partial(w.drain, handing_back) for w in workers], left() + 1.0)
        for what in (self.probes.hand_back, self.inbox.inbox.release):
            try:
                what()
            except Exception:  # the database may be away: leases and claims run out anyway
                log.exception("could not hand back work on the way out")
        quick = [w for w in workers if w.drains]
        _together([partial(w.finish, deadline) for w in quick], left() + 1.0)
        self.runtime.engine.dispose()


def create_bot(
    settings: Settings,
    *,
    config_path: str | Path | None = None,
    client: WebClient | None = None,
    publish_interval: float = 1.0,
    pagerduty: PagerDuty | None = None,
    role: Role = Role.ALL,
) -> Bot:
    """Everything the bot needs for ``role``, checked before anything listens.

    Raises:
        DeployError: missing or refused credentials, invalid config, database not migrated.
    """
    if not settings.slack_bot_token:
        raise DeployError("SLACK_BOT_TOKEN is not set: give the bot's xoxb- token.")
    if role.web and not settings.slack_app_token and not settings.slack_signing_secret:
        raise DeployError("SLACK_SIGNING_SECRET is not set: HTTP mode needs it to verify requests.")
    client = client or make_client(settings.slack_bot_token, base_url=settings.slack_api_url)
    try:
        team_url = check_credentials(client)
    except SlackApiError as error:
        raise DeployError(
            f"Slack refused SLACK_BOT_TOKEN ({error.response.get('error')}): check the token."
        ) from None
    except OSError as error:
        raise DeployError(f"can't reach Slack at {client.base_url}: {error}") from None
    runtime = build_runtime(
        config_path=config_path or settings.config_path, database_url=settings.database_url
    )
    ok, why = readiness(runtime)
    if not ok:
        raise DeployError(why)
    try:
        pagerduty = pagerduty or PagerDuty()
    except ValueError as error:
        raise DeployError(f"PAGERDUTY_EVENTS_URL: {error}") from None
    return _assemble(settings, runtime, client, team_url, pagerduty, publish_interval, role)


def _assemble(
    settings: Settings,
    runtime: Runtime,
    client: WebClient,
    team_url: str,
    pagerduty: PagerDuty,
    publish_interval: float,
    role: Role,
) -> Bot:
    """Wire the parts together; nothing here talks to the network yet."""
    factory, config, service = runtime.session_factory, runtime.config, runtime.service
    service.roles = SlackRoles(config, client)
    links = SlackLinks(team_url, factory)
    service.effects = Effects(config, Incidents(config, link=links.session))
    publisher = SessionPublisher(
        client=client,
        config=config,
        session_factory=factory,
        interval=publish_interval,
        links=links,
    )
    reports = ReportPoster(client=client, session_factory=factory, links=links)
    home = HomePublisher(
        client=client,
        config=config,
        session_factory=factory,
        roles=service.roles,
        link=links.session,
    )
    delivery = SlackDelivery(
        client=client, session_factory=factory, report=reports.deliver, home=home.deliver
    )
    probes = SessionProbes(
        config=config,
        service=service,
        lease=settings.outbox_lease,
        concurrency=settings.probe_concurrency,
        per_host=settings.probe_per_host,
    )
    rollbacks = Rollbacks(config=config, service=service, probes=probes, session_factory=factory)
    deploys = DeploySteps(config=config, service=service, poll=settings.deploy_poll)

    def probe_round(payload: dict[str, Any]) -> None:
        """A probe round asked for by a person or a state change; its verdict goes back."""
        try:
            outcome = probes.run(int(payload["session_id"]), why=str(payload["why"]))
        except DomainError as closed:
            reply(payload.get("reply_to"), f":warning: {closed}")
            return
        reply(payload.get("reply_to"), verdict(outcome))

    # Slack effects, pages and long effects (probe rounds, rollback steps) have workers of
    # their own: a rollback waiting on a rollout never delays a Slack update, and a PagerDuty
    # outage (requests hanging until their timeout) delays neither.
    outbox = OutboxWorker(
        factory,
        {"publish": publisher.deliver, "slack": delivery.deliver},
        backoff_base=settings.outbox_backoff,
        backoff_cap=settings.outbox_backoff_cap,
        lease=settings.outbox_lease,
        max_attempts=200,
        poll_interval=settings.outbox_poll,
    )
    page_cap = settings.pagerduty_backoff_cap
    paging = ThreadLinkedPages(pagerduty, links, wait=settings.pagerduty_link_wait)
    pages = OutboxWorker(
        factory,
        {"pagerduty": paging.deliver},
        backoff_base=min(settings.outbox_backoff, page_cap),
        backoff_cap=page_cap,
        lease=settings.outbox_lease,
        # Retried every few seconds for hours: a page is not given up during an outage, and
        # acknowledge and resolve wait behind their trigger.
        max_attempts=5000,
        poll_interval=settings.outbox_poll,
    )
    work = OutboxWorker(
        factory,
        {"probes": probe_round, "rollback": rollbacks.deliver, "deploy": deploys.deliver},
        backoff_base=settings.outbox_backoff,
        backoff_cap=settings.outbox_backoff_cap,
        lease=settings.outbox_lease,
        max_attempts=5,
        poll_interval=settings.outbox_poll,
        drains=False,  # on SIGTERM: finish the step in hand; another replica takes the rest
    )
    scheduler = ScheduleRunner(
        context=JobContext(config=config, service=service, probes=probes, session_factory=factory),
        lock=leader_lock_for(runtime.database_url, installation=settings.installation),
        poll=settings.scheduler_poll,
        sync_every=settings.scheduler_sync,
    )
    # Sessions' expiries, reminders and monitoring rounds: outbox rows due at their slot,
    # delivered by any replica (a round runs the probes: a long effect, like ``work``'s).
    timetable = OutboxWorker(
        factory,
        {"schedule": scheduler.jobs.deliver},
        backoff_base=settings.outbox_backoff,
        backoff_cap=settings.outbox_backoff_cap,
        lease=settings.outbox_lease,
        max_attempts=5000,  # a chain given up would wait for the leader's reconcile
        poll_interval=settings.outbox_poll,
        drains=False,
    )

    def wake() -> None:
        outbox.wake()
        pages.wake()
        work.wake()
        timetable.wake()

    service.wake = wake
    # The web tier records and acknowledges; the listeners run on the inbox's workers: here
    # (handed over at once), or, for a web-only process, in `deploybot worker`s.
    inbox = SlackInbox(factory, claim=settings.inbox_claim, shared=role is Role.WEB)
    worker_app = build_app(client=client, signing_secret="", inbox=inbox, worker=True)
    pool = InboxWorkers(
        inbox, worker_app, poll=settings.inbox_poll, threads=settings.worker_threads
    )
    inbox.hand_off = pool.submit if role is Role.ALL else _left_to_the_workers
    app = build_app(client=client, signing_secret=settings.slack_signing_secret, inbox=inbox)
    deps = Deps(service=service, publisher=publisher, config=config, rollbacks=rollbacks)
    register(app, deps)
    register(worker_app, deps)
    return Bot(
        runtime,
        client,
        app,
        publisher,
        probes,
        rollbacks,
        scheduler,
        (outbox, pages, work, timetable),
        pool,
        Periodic(
            probes.recover_interrupted,
            interval=settings.outbox_lease / 3,
            name="probe-recovery",
        ),
        settings.slack_signing_secret or "",
        role,
    )


def _left_to_the_workers(key: str, body: dict[str, Any]) -> None:
    """A web-only process's hand-off: the row is due at once; a worker polls for it."""


def _together(calls: list[Callable[[], object]], timeout: float) -> None:
    """Run ``calls`` side by side in daemon threads, waiting ``timeout`` seconds at most."""
    threads = [threading.Thread(target=call, name="draining", daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))


def readiness(runtime: Runtime) -> tuple[bool, str]:
    """Ready means the database answers and its schema is at the latest migration."""
    try:
        problem = schema_problem(runtime.engine)  # creates no SQLite file that is missing
    except Exception as error:  # any driver error means not ready, and says why
        return False, f"the database is unreachable: {type(error).__name__}"
    if problem is not None:
        return False, f"{problem}: run `deploybot db upgrade`"
    return True, "ready"


def serve_http(bot: Bot, *, host: str, port: int, threads: int = 16) -> Any:
    """A waitress server (multi-threaded, production grade); call ``.run()`` on it."""
    return waitress_server(bot.wsgi(), host=host, port=port, threads=threads)


def serve_socket_mode(bot: Bot, *, app_token: str, block: bool = True) -> SocketModeHandler:
    """Socket Mode: no public URL (the caller serves the health endpoints, as in HTTP mode).

    Blocks for good unless ``block`` is False: then it returns once connected, and the
    caller ends the connection with ``handler.close()``.
    """
    from bot.slack.socket_edge import CheckedSocketModeHandler

    handler = CheckedSocketModeHandler(bot.app, app_token)
    if block:
        handler.start()  # type: ignore[no-untyped-call]
    else:
        handler.connect()  # type: ignore[no-untyped-call]
    return handler
