"""Composes the running bot and serves it: HTTP on a production WSGI server, or Socket Mode."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app.effects import Effects
from bot.app.incidents import Incidents
from bot.app.probe_rounds import SessionProbes, verdict
from bot.app.rollback import Rollbacks
from bot.domain.errors import DeployError, DomainError
from bot.integrations.pagerduty import PagerDuty
from bot.ops import metrics
from bot.ops.settings import Settings
from bot.runtime import Runtime, build_runtime
from bot.slack.app import build_app, check_credentials, make_client
from bot.slack.delivery import SlackDelivery, reply
from bot.slack.edge import EdgeHandler
from bot.slack.inbox import InboxWorker, SlackInbox
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
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)


@dataclass
class Bot:
    runtime: Runtime
    client: WebClient
    app: App
    publisher: SessionPublisher
    probes: SessionProbes
    rollbacks: Rollbacks
    scheduler: ScheduleRunner
    workers: tuple[OutboxWorker, ...]
    inbox: InboxWorker
    recovery: Periodic  # marks interrupted the probe rounds of processes that stopped
    signing_secret: str = ""

    def wsgi(self) -> WSGIApplication:
        return make_wsgi(
            self.app,
            signing_secret=self.signing_secret,
            ready=lambda: readiness(self.runtime),
            registry=metrics.registry_for(self.runtime.session_factory),
        )

    def start(self, *, scheduler: bool = True) -> None:
        """Start the background parts: outbox workers, the inbox's take-over and (when it
        leads) the scheduler."""
        for worker in self.workers:
            worker.start()
        self.inbox.start()
        self.recovery.start()
        if scheduler:
            self.scheduler.start()

    def close(self) -> None:
        self.scheduler.stop()
        self.recovery.stop()
        self.inbox.stop()
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
        self.inbox.stop()
        _bounded(self.app.listener_runner.listener_executor.shutdown, left(0.5))
        # The last fifth delivers what handing back writes (the interrupted probes' notes).
        handing_back = deadline - timeout / 5
        _together([partial(w.drain, handing_back) for w in self.workers], left() + 1.0)
        for what in (self.probes.hand_back, self.inbox.inbox.release):
            try:
                what()
            except Exception:  # the database may be away: leases and claims run out anyway
                log.exception("could not hand back work on the way out")
        quick = [w for w in self.workers if w.drains]
        _together([partial(w.finish, deadline) for w in quick], left() + 1.0)
        self.runtime.engine.dispose()


def create_bot(
    settings: Settings,
    *,
    config_path: str | Path | None = None,
    client: WebClient | None = None,
    publish_interval: float = 1.0,
    pagerduty: PagerDuty | None = None,
) -> Bot:
    """Everything the bot needs, checked before anything listens.

    Raises:
        DeployError: missing or refused credentials, invalid config, database not migrated.
    """
    if not settings.slack_bot_token:
        raise DeployError("SLACK_BOT_TOKEN is not set: give the bot's xoxb- token.")
    if not settings.slack_app_token and not settings.slack_signing_secret:
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
    return _assemble(settings, runtime, client, team_url, pagerduty, publish_interval)


def _assemble(
    settings: Settings,
    runtime: Runtime,
    client: WebClient,
    team_url: str,
    pagerduty: PagerDuty,
    publish_interval: float,
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
    delivery = SlackDelivery(client=client, session_factory=factory, report=reports.deliver)
    probes = SessionProbes(
        config=config,
        service=service,
        lease=settings.outbox_lease,
        concurrency=settings.probe_concurrency,
        per_host=settings.probe_per_host,
    )
    rollbacks = Rollbacks(config=config, service=service, probes=probes, session_factory=factory)

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
        {"probes": probe_round, "rollback": rollbacks.deliver},
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
    inbox = SlackInbox(factory, claim=settings.inbox_claim)
    app = build_app(client=client, signing_secret=settings.slack_signing_secret, inbox=inbox)
    register(
        app,
        Deps(service=service, publisher=publisher, config=config, rollbacks=rollbacks),
    )
    return Bot(
        runtime,
        client,
        app,
        publisher,
        probes,
        rollbacks,
        scheduler,
        (outbox, pages, work, timetable),
        InboxWorker(inbox, app, poll=settings.outbox_poll),
        Periodic(
            probes.recover_interrupted,
            interval=settings.outbox_lease / 3,
            name="probe-recovery",
        ),
        settings.slack_signing_secret or "",
    )


def _bounded(call: Callable[[], object], timeout: float) -> None:
    """Run ``call`` in a daemon thread, waiting for it ``timeout`` seconds at most."""
    _together([call], timeout)


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


def make_wsgi(
    app: App,
    *,
    signing_secret: str,
    ready: Callable[[], tuple[bool, str]],
    registry: Collector | None = None,
) -> WSGIApplication:
    """Bolt at ``/slack/events`` (behind :class:`~bot.slack.edge.EdgeHandler`, which answers
    malformed requests itself) with ``/healthz``, ``/readyz`` and ``/metrics`` beside it.

    ``/metrics`` serves ``registry`` in Prometheus' text format (the process-wide metrics
    when None; ``deploybot_sessions`` needs the registry of :func:`bot.ops.metrics.registry_for`).
    """
    slack = EdgeHandler(app, signing_secret)
    registry = registry or metrics.registry_for(None)

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _plain(start_response, 200, "ok")
        if path == "/readyz":
            ok, why = ready()
            return _plain(start_response, 200 if ok else 503, why)
        if path == "/metrics":
            body = generate_latest(registry)
            headers = [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        return slack(environ, start_response)

    return wsgi


def _plain(start_response: StartResponse, status: int, text: str) -> list[bytes]:
    reason = {200: "OK", 503: "Service Unavailable"}[status]
    body = (text + "\n").encode()
    start_response(
        f"{status} {reason}",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def serve_http(bot: Bot, *, host: str, port: int, threads: int = 16) -> Any:
    """A waitress server (multi-threaded, production grade); call ``.run()`` on it."""
    import waitress

    return waitress.create_server(bot.wsgi(), host=host, port=port, threads=threads)


class HttpServing:
    """A waitress server running on a daemon thread, closed gracefully from another one.

    waitress's ``close()`` belongs in its loop's thread; here the closing steps go through
    its trigger, in waitress's own order: stop accepting, let the requests being answered
    finish, send what they wrote, close the connections (then the loop ends by itself).
    """

    def __init__(self, server: Any, *, name: str = "waitress") -> None:
        self.server = server
        self._thread = threading.Thread(target=server.run, name=name, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.effective_port)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, finish the requests being answered, close the rest; wait for it."""
        from waitress import wasyncore

        server = self.server
        if not self._thread.is_alive():
            server.task_dispatcher.shutdown(timeout=timeout)
            return
        not_accepting = threading.Event()

        def stop_accepting() -> None:  # the listening socket only: answers pull the trigger
            wasyncore.dispatcher.close(server)
            not_accepting.set()

        def close_the_rest() -> None:  # the trigger, idle connections; the others once sent
            for dispatcher in list(server._map.values()):
                if getattr(dispatcher, "total_outbufs_len", 0):
                    dispatcher.close_when_flushed = True
                else:
                    dispatcher.close()

        server.trigger.pull_trigger(stop_accepting)
        not_accepting.wait(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)  # requests being answered finish
        server.trigger.pull_trigger(close_the_rest)
        self._thread.join(timeout)


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
